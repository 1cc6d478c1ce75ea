"""A report as SARIF 2.1.0, the format GitHub code scanning reads (`--sarif FILE`).

One run of one tool (vsock-fuzz), whose driver has one rule per oracle: id
the oracle's name, shortDescription its spec rule, defaultConfiguration.level
from its severity (critical and error: "error", warning: "warning"). One
result per root cause when the report has them (`root_causes`), else one per
finding: ruleId the oracle, level from the result's own severity ("note" below the
run's --fail-on, so only what fails the run becomes a code-scanning alert), the message,
the reproducer as the result's location (a path relative to the working
directory, under %SRCROOT%, which originalUriBaseIds sets to that directory)
and the command that replays it in the result's properties. A result whose
reproducer was not kept has no location. A run that could not complete says
why in its invocation (executionSuccessful false, a notification).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from ..oracles import SEVERITY_ORDER

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
LEVEL = {"critical": "error", "error": "error", "warning": "warning"}


def level(severity: str) -> str:
    return LEVEL.get(severity, "warning")


def result_level(severity: str, fail_on: str | None) -> str:
    """A result's level: its severity's, or "note" below the run's --fail-on (not an alert)."""
    bar = SEVERITY_ORDER.get(fail_on or "error", SEVERITY_ORDER["error"])
    return level(severity) if SEVERITY_ORDER.get(severity, 0) >= bar else "note"


def artifact_uri(path: str, cwd: str | None = None) -> str:
    """`path` as a URI reference relative to the working directory (forward slashes, escaped)."""
    cwd = cwd or os.getcwd()
    rel = os.path.relpath(os.path.abspath(path), cwd)
    return quote(Path(rel).as_posix(), safe="/._-~")


def _location(path: str | None, cwd: str) -> list[dict]:
    if not path:
        return []
    return [{"physicalLocation": {"artifactLocation": {"uri": artifact_uri(path, cwd), "uriBaseId": "%SRCROOT%"}}}]


def _rules(rep: dict, extra: list[tuple[str, str, str, str]]) -> list[dict]:
    """One rule per oracle of the report (and per oracle a result names that the report does not list)."""
    oracles = {name: (o["family"], o["severity"], o["rule"]) for name, o in rep.get("oracles", {}).items()}
    for name, family, severity, rule in extra:
        oracles.setdefault(name, (family, severity, rule))
    out = []
    for name, (family, severity, rule) in sorted(oracles.items()):
        out.append({
            "id": name,
            "name": "".join(part.capitalize() for part in name.replace("-", ".").split(".")),
            "shortDescription": {"text": rule or name},
            "defaultConfiguration": {"level": level(severity)},
            "properties": {"family": family, "severity": severity, "tags": ["virtio-vsock", family]},
        })
    return out


def _results(rep: dict, cwd: str) -> tuple[list[dict], list[tuple[str, str, str, str]]]:
    results, seen = [], []
    fail_on = rep.get("fail_on")
    if rep.get("root_causes"):
        for c in rep["root_causes"]:
            seen.append((c["oracle"], c["oracle"].split(".", 1)[0], c["severity"], c.get("rule", "")))
            props = {"severity": c["severity"], "findings": c.get("findings"), "cases": c.get("cases")}
            if c.get("reproduce"):
                props["reproduce"] = c["reproduce"]
            if "new" in c:
                props["new"] = c["new"]
            result = {"ruleId": c["oracle"], "level": result_level(c["severity"], fail_on),
                      "message": {"text": c["title"]}, "locations": _location(c.get("reproducer"), cwd),
                      "properties": props}
            if c.get("key"):
                result["partialFingerprints"] = {"vsockFuzzRootCause/v1": c["key"]}
            if c.get("accepted"):  # --accept: shown as suppressed, with the reason, not as an alert
                result["suppressions"] = [{"kind": "external", "justification": c["accepted"]}]
            results.append(result)
        return results, seen
    for f in rep.get("findings", []):
        seen.append((f["oracle"], f["family"], f["severity"], f.get("rule", "")))
        repro = f.get("reproducer") or {}
        props = {"severity": f["severity"], "family": f["family"]}
        if repro.get("command"):
            props["reproduce"] = repro["command"]
        for key in ("row", "count"):
            if key in f:
                props[key] = f[key]
        results.append({"ruleId": f["oracle"], "level": result_level(f["severity"], fail_on), "message": {"text": f["message"]},
                        "locations": _location(repro.get("path"), cwd),
                        "partialFingerprints": {"vsockFuzzFinding/v1": f.get("key", f["oracle"])},
                        "properties": props})
    return results, seen


def to_sarif_log(rep: dict, cwd: str | None = None) -> dict:
    cwd = cwd or os.getcwd()
    results, seen = _results(rep, cwd)
    rules = _rules(rep, seen)
    index = {r["id"]: i for i, r in enumerate(rules)}
    for r in results:
        r["ruleIndex"] = index[r["ruleId"]]
        if not r["locations"]:
            del r["locations"]
    invocation = {"executionSuccessful": rep.get("status") != "error"}
    if "exit_code" in rep:
        invocation["exitCode"] = rep["exit_code"]
    if rep.get("argv") is not None:
        invocation["arguments"] = list(rep["argv"])
    if rep.get("started"):
        invocation["startTimeUtc"] = rep["started"]
    if rep.get("finished"):
        invocation["endTimeUtc"] = rep["finished"]
    if rep.get("status") == "error":
        invocation["toolExecutionNotifications"] = [
            {"level": "error", "message": {"text": rep.get("error") or "the run did not complete"}}]
    target = rep.get("target", {})
    run = {
        "tool": {"driver": {"name": "vsock-fuzz", "version": rep.get("tool", {}).get("version", ""),
                            "rules": rules}},
        "automationDetails": {"id": f"vsock-fuzz/{rep.get('command', '')}/"},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": Path(cwd).resolve().as_uri().rstrip("/") + "/"}},
        "invocations": [invocation],
        "results": results,
        "properties": {"command": rep.get("command"), "status": rep.get("status"),
                       "target": {k: target[k] for k in ("spec", "name", "version") if k in target},
                       "profile": rep.get("profile"), "fail_on": rep.get("fail_on")},
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def to_sarif(rep: dict) -> str:
    return json.dumps(to_sarif_log(rep), indent=1) + "\n"
