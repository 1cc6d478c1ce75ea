"""Reports CI systems display: JSON (versioned schema), JUnit XML, Markdown.

One report is a plain dict following `report-schema.json` (schema_version 1,
shipped in the package). The commands that find things build it and hand it
to `write_reports`:

    rep = report.new("fuzz", target, spec="cmd:./adapter", profile="spec", argv=sys.argv[1:])
    rep["findings"] = [report.finding_entry(f, path=stem + ".bin") for f in findings]
    report.finish(rep, exit_code=1, stats={"cases": 120000, "seconds": 60.0})
    report.write_reports(rep, json_path=..., junit_path=..., markdown_path=...)

Commands take the three flags with `add_report_options(parser)` and write
with `write_for_args(rep, args)`.

`finish` fills `families` (one verdict per oracle family: fail when a finding
is at or above `fail_on`) unless the caller set them (check does, from its
matrix: safety, fidelity and interop fail, the rest warn unless --strict). JUnit has one test
case per matrix row (check) or per oracle (fuzz, replay), so a CI page lists
every rule checked, failing ones with their message. Every file is written
atomically (a temporary file, then os.replace).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from importlib import resources
from xml.etree import ElementTree as ET

from .. import __version__
from ..case.corpus import atomic_write
from ..oracles import FAMILIES, ORACLES, SEVERITY_ORDER

SCHEMA_VERSION = 1


def schema() -> dict:
    return json.loads(resources.files("vsock_fuzz").joinpath("report-schema.json").read_text())


def utc_now(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def new(command: str, target=None, *, spec: str = "", profile: str = "spec", strict: bool = False,
        fail_on: str = "error", argv: list[str] | None = None) -> dict:
    """A report for one run; `target` is an open target (its hello name and version) or None.

    `fail_on` is the command's --fail-on: findings at or above it fail the run.
    """
    rep = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "vsock-fuzz", "version": __version__},
        "command": command,
        "target": {"spec": spec, "name": str(getattr(target, "name", "") or spec),
                   "version": str(getattr(target, "version", "") or "")},
        "profile": profile,
        "strict": strict,
        "fail_on": fail_on,
        "started": utc_now(),
        "stats": {},
        "findings": [],
        "oracles": {name: {"family": o.family, "severity": o.severity, "rule": o.rule}
                    for name, o in sorted(ORACLES.items())},
    }
    if argv is not None:
        rep["argv"] = [str(a) for a in argv]
    return rep


def describe_target(rep: dict, spec: str, **options) -> None:
    """Fill the report's target name and version from the target's hello (when it can be opened);
    `options` are open_target's keyword arguments."""
    from ..targets import TargetError, open_target
    try:
        target = open_target(spec, **options)
    except TargetError:
        return
    try:
        if hasattr(target, "start"):  # a cmd: target says hello when it starts
            target.start()
        rep["target"].update(name=str(target.name), version=str(target.version or ""),
                             device=target.device.to_json())
    except TargetError:
        pass
    finally:
        target.close()


def finding_entry(finding, *, path: str | None = None, command: str | None = None,
                  row: str | None = None, count: int | None = None, accepted: bool = False) -> dict:
    """A `Finding` as the report lists it; `path` is the kept binary case, if any."""
    return entry_from_json(finding.to_json(), path=path, command=command, row=row, count=count, accepted=accepted)


def entry_from_json(obj: dict, *, path: str | None = None, command: str | None = None,
                    row: str | None = None, count: int | None = None, accepted: bool = False) -> dict:
    """A finding as `Finding.to_json()` wrote it (e.g. a `.finding.json` file) as the report lists it."""
    cmd = command or obj.get("reproduce") or ""
    if path and not command:  # the finding's own command names the file by its stem; name it where it is
        cmd = cmd.rsplit(" ", 1)[0] + " " + shlex.quote(path)
    out = {key: obj[key] for key in ("oracle", "family", "severity", "rule", "message")}
    out["key"] = obj.get("key", obj["oracle"])
    out["reproducer"] = {"path": path, "command": cmd}
    out.update({key: obj[key] for key in ("case", "binary", "answer") if key in obj})
    if row is not None:
        out["row"] = row
    if count is not None:
        out["count"] = count
    if accepted:
        out["accepted"] = True
    return out


def fails(rep: dict, finding: dict) -> bool:
    """Whether a finding is at or above the run's --fail-on severity, and not accepted (--accept)."""
    return (SEVERITY_ORDER[finding["severity"]] >= SEVERITY_ORDER[rep.get("fail_on", "error")]
            and not finding.get("accepted"))


def family_verdicts(rep: dict) -> dict:
    """One verdict per family from the report's findings and its --fail-on; in a run that
    could not complete (status error) every family without a failing finding reads error."""
    out = {}
    for fam in FAMILIES:
        found = [f for f in rep["findings"] if f["family"] == fam]
        verdict = "fail" if any(fails(rep, f) for f in found) else ("warn" if found else "pass")
        out[fam] = {"verdict": verdict, "findings": len(found)}
    return _incomplete(rep, out)


def _incomplete(rep: dict, families: dict) -> dict:
    if rep.get("status") == "error":
        for v in families.values():
            if v["verdict"] != "fail":
                v["verdict"] = "error"
    return families


def finish(rep: dict, *, exit_code: int, stats: dict | None = None, error: str | None = None) -> dict:
    """Close the report: finished time, exit code, status, stats and family verdicts.

    A run that could not complete (exit status 2 or more) always carries its reason in
    `error` (a generic one naming the exit status when the caller has none), and its
    families read error unless a finding failed them."""
    rep["finished"] = utc_now()
    rep["exit_code"] = exit_code
    rep["status"] = "error" if exit_code >= 2 else ("fail" if exit_code else "pass")
    if error:
        rep["error"] = error
    elif rep["status"] == "error" and not rep.get("error"):
        rep["error"] = ("interrupted" if exit_code == 130 else
                        f"the run did not complete (exit status {exit_code}); its standard error says why")
    if stats:
        rep["stats"].update(stats)
    if "families" in rep:
        _incomplete(rep, rep["families"])
    else:
        rep["families"] = family_verdicts(rep)
    return rep


# --- validation (the subset of JSON Schema report-schema.json uses) -------------

def validate(rep, sch: dict | None = None) -> list[str]:
    """Problems of `rep` against the schema, as "path: problem" lines (empty: valid)."""
    root = sch or schema()
    errors: list[str] = []
    _check(rep, root, root, "$", errors)
    return errors


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(value, t: str) -> bool:
    if t == "integer":
        return type(value) is int
    if t == "number":
        return type(value) in (int, float)
    return isinstance(value, _TYPES[t])


def _check(value, s: dict, root: dict, where: str, errors: list[str]) -> None:
    if "$ref" in s:
        s = root["$defs"][s["$ref"].rsplit("/", 1)[1]]
    if "const" in s and value != s["const"]:
        errors.append(f"{where}: {value!r} is not {s['const']!r}")
    if "enum" in s and value not in s["enum"]:
        errors.append(f"{where}: {value!r} is not one of {s['enum']}")
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_is(value, t) for t in types):
            errors.append(f"{where}: {type(value).__name__} is not {' or '.join(types)}")
            return
    if "minimum" in s and isinstance(value, (int, float)) and value < s["minimum"]:
        errors.append(f"{where}: {value} < {s['minimum']}")
    if "pattern" in s and isinstance(value, str) and not re.search(s["pattern"], value):
        errors.append(f"{where}: {value!r} does not match {s['pattern']}")
    if isinstance(value, dict):
        for key in s.get("required", ()):
            if key not in value:
                errors.append(f"{where}: missing {key!r}")
        props = s.get("properties", {})
        for key, v in value.items():
            sub = props.get(key, s.get("additionalProperties"))
            if isinstance(sub, dict):
                _check(v, sub, root, f"{where}.{key}", errors)
    if isinstance(value, list) and "items" in s:
        for i, v in enumerate(value):
            _check(v, s["items"], root, f"{where}[{i}]", errors)


# --- renderings -----------------------------------------------------------------

def to_json(rep: dict) -> str:
    return json.dumps(rep, indent=1, sort_keys=False) + "\n"


def _seconds(rep: dict) -> float:
    return float(rep.get("stats", {}).get("seconds", 0.0))


def to_junit(rep: dict) -> str:
    """JUnit XML: one <testcase> per matrix row (check) or per oracle (fuzz, replay)."""
    cases = _junit_cases(rep)
    failures = sum(1 for c in cases if c[2] == "failure")
    errors = 1 if rep.get("status") == "error" else 0
    suite_name = f"vsock-fuzz {rep['command']} {rep['target']['spec'] or rep['target']['name']}"
    top = ET.Element("testsuites", name="vsock-fuzz", tests=str(len(cases) + errors),
                     failures=str(failures), errors=str(errors), time=f"{_seconds(rep):.3f}")
    suite = ET.SubElement(top, "testsuite", name=suite_name, tests=str(len(cases) + errors),
                          failures=str(failures), errors=str(errors),
                          skipped=str(len(cases) - failures if errors else 0),  # not checked in full
                          time=f"{_seconds(rep):.3f}", timestamp=rep["started"].rstrip("Z"))
    props = ET.SubElement(suite, "properties")
    for name, value in (("target.name", rep["target"]["name"]), ("target.version", rep["target"]["version"]),
                        ("profile", rep["profile"]), ("tool.version", rep["tool"]["version"]),
                        ("schema_version", str(rep["schema_version"]))):
        ET.SubElement(props, "property", name=name, value=value)
    if errors:
        tc = ET.SubElement(suite, "testcase", classname=f"vsock-fuzz.{rep['command']}", name="run", time="0")
        ET.SubElement(tc, "error", message=rep.get("error") or "the run did not complete", type="TargetError")
    for classname, name, outcome, message, text in cases:
        tc = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
        if outcome == "failure":
            el = ET.SubElement(tc, "failure", message=message, type=classname.rsplit(".", 1)[-1])
            el.text = text
        elif errors:
            ET.SubElement(tc, "skipped", message=f"not checked in full: {rep.get('error') or 'the run did not complete'}")
        elif text:
            ET.SubElement(tc, "system-out").text = text
    ET.indent(top)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(top, encoding="unicode") + "\n"


def _junit_cases(rep: dict):
    """(classname, name, "failure"|"pass", message, text) per test case."""
    out = []
    if "rows" in rep:
        by_row: dict[str, list[dict]] = {}
        for f in rep["findings"]:
            by_row.setdefault(f.get("row", ""), []).append(f)
        for row in rep["rows"]:
            lines = [f"{i['family']}: {i['message']}" for i in row["issues"]]
            lines += [f"{f['oracle']} ({f['severity']}): {f['message']}\n  reproduce: {f['reproducer']['command']}"
                      for f in by_row.get(row["name"], [])]
            message = f"expected {row['expected']}, got {row['got']}"
            outcome = "failure" if row["verdict"] == "fail" else "pass"
            if row["verdict"] == "warn":
                lines.insert(0, f"warning: {message}")
            out.append((f"vsock-fuzz.check.{row['family']}", row["name"], outcome, message, "\n".join(lines)))
        return out
    if rep.get("root_causes"):
        bar = SEVERITY_ORDER[rep.get("fail_on", "error")]
        for c in rep["root_causes"]:
            outcome = "failure" if SEVERITY_ORDER[c["severity"]] >= bar and "accepted" not in c else "pass"
            text = (f"{c['findings']} distinct finding(s), {c['cases']} case(s)\n  rule: {c['rule']}"
                    + (f"\n  reproduce: {c['reproduce']}" if c.get("reproduce") else ""))
            out.append((f"vsock-fuzz.{rep['command']}.{c['oracle'].split('.')[0]}", f"{c['oracle']}: {c['title']}",
                        outcome, f"[{c['severity']}] {c['title']}"[:500], text))
        return out
    names = sorted(set(rep.get("oracles", {})) | {f["oracle"] for f in rep["findings"]})
    for name in names:
        found = [f for f in rep["findings"] if f["oracle"] == name]
        family = found[0]["family"] if found else rep["oracles"][name]["family"]
        text = "\n".join(f"{f['message']}\n  rule: {f['rule']}\n  reproduce: {f['reproducer']['command']}" for f in found)
        outcome = "failure" if any(fails(rep, f) for f in found) else "pass"
        message = f"{len(found)} finding(s): {found[0]['message']}" if found else ""
        out.append((f"vsock-fuzz.{rep['command']}.{family}", name, outcome, message[:500], text))
    return out


def to_markdown(rep: dict, max_rows: int = 50) -> str:
    """A summary for a CI job page (GitHub's $GITHUB_STEP_SUMMARY)."""
    t = rep["target"]
    icon = {"pass": "✅", "warn": "⚠️", "fail": "❌", "error": "💥"}
    status = {"pass": "✅ pass", "fail": "❌ fail", "error": "💥 error"}[rep["status"]]
    lines = [f"## vsock-fuzz {rep['command']}: {status}", "",
             f"Target `{t['spec'] or t['name']}` ({_md((t['name'] + ' ' + t['version']).strip())}), profile `{rep['profile']}`, "
             f"{rep['started']} to {rep['finished']}, vsock-fuzz {rep['tool']['version']}."]
    if rep.get("error"):
        lines += ["", f"**Error:** {_md(rep['error'])}"]
    if rep.get("stats"):
        lines += ["", " · ".join(f"{k}: {_num(v)}" for k, v in rep["stats"].items())]
    lines += ["", "| family | verdict | findings |", "| --- | --- | --- |"]
    for fam, v in rep["families"].items():
        lines.append(f"| {fam} | {icon[v['verdict']]} {v['verdict']} | {v['findings']}"
                     + (f" ({len(v['rows'])} rows)" if "rows" in v else "") + " |")
    if rep.get("root_causes"):
        lines += ["", f"### Root causes ({len(rep['root_causes'])}, from {len(rep['findings'])} distinct findings)", "",
                  "| severity | oracle | root cause | findings | cases | reproduce |", "| --- | --- | --- | --- | --- | --- |"]
        for c in rep["root_causes"][:max_rows]:
            new = " **new**" if c.get("new") else ""
            lines.append(f"| {c['severity']} | `{c['oracle']}` | {_md(c['title'])}{new} | {c['findings']} | {c['cases']} | "
                         + (f"`{_md(c['reproduce'])}` |" if c.get("reproduce") else "not kept |"))
    elif rep["findings"]:
        lines += ["", "### Findings", "", "| severity | oracle | rule | message | reproduce |", "| --- | --- | --- | --- | --- |"]
        worst_first = sorted(rep["findings"], key=lambda f: -SEVERITY_ORDER[f["severity"]])
        for f in worst_first[:max_rows]:
            lines.append(f"| {f['severity']} | `{f['oracle']}` | {_md(f['rule'])} | {_md(f['message'])} | "
                         f"`{_md(f['reproducer']['command'])}` |")
        if len(rep["findings"]) > max_rows:
            lines.append(f"\n{len(rep['findings']) - max_rows} more in the JSON report.")
    if "rows" in rep:
        flagged = [r for r in rep["rows"] if r["verdict"] != "pass"]
        lines += ["", f"### Matrix: {len(rep['rows']) - len(flagged)} of {len(rep['rows'])} rows pass", ""]
        if flagged:
            lines += ["| row | family | expected | got | verdict |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| `{r['name']}` | {r['family']} | {r['expected']} | {_md(r['got'])} | {icon[r['verdict']]} {r['verdict']} |"
                      for r in flagged[:max_rows]]
    return "\n".join(lines) + "\n"


def root_cause_entries(causes, is_new=lambda cause: False, accepted: dict | None = None) -> list[dict]:
    """The report's `root_causes`: oracles.triage's groups, with whether each is new, and the reason
    of those --accept lists."""
    accepted = accepted or {}
    return [{**c.to_json(), "new": bool(is_new(c)), **({"accepted": accepted[c.key]} if c.key in accepted else {})}
            for c in causes]


def _md(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _num(v) -> str:
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def add_report_options(p) -> None:
    """--json, --junit, --markdown for a command that finds things."""
    p.add_argument("--json", metavar="FILE", help="write the JSON report (vsock_fuzz/report-schema.json)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML for a CI test page")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown summary (appended when FILE is $GITHUB_STEP_SUMMARY)")
    p.add_argument("--sarif", metavar="FILE", help="write SARIF 2.1.0 (GitHub code scanning): one rule per oracle, "
                                                   "one result per root cause or finding")


def write_for_args(rep: dict, args) -> list[str]:
    return write_reports(rep, args.json, args.junit, args.markdown, getattr(args, "sarif", None))


def write_reports(rep: dict, json_path: str | None = None, junit_path: str | None = None,
                  markdown_path: str | None = None, sarif_path: str | None = None) -> list[str]:
    """Write the requested renderings atomically; returns the paths written.

    The Markdown path may be an existing file another step appends to (GitHub's
    $GITHUB_STEP_SUMMARY): the summary is then appended, not swapped in.
    """
    written = []
    for path in (json_path, junit_path, markdown_path, sarif_path):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    from .sarif import to_sarif
    for path, text in ((json_path, to_json), (junit_path, to_junit), (sarif_path, to_sarif)):
        if path:
            atomic_write(path, text(rep).encode())
            written.append(path)
    if markdown_path:
        md = to_markdown(rep)
        if _is_step_summary(markdown_path):
            with open(markdown_path, "a", encoding="utf-8") as f:
                f.write(md)
        else:
            atomic_write(markdown_path, md.encode())
        written.append(markdown_path)
    return written


def _is_step_summary(path: str) -> bool:
    env = os.environ.get("GITHUB_STEP_SUMMARY")
    return bool(env) and os.path.abspath(env) == os.path.abspath(path)
