"""Reports: JSON against report-schema.json (jsonschema and our own reader
agree), JUnit XML with the elements CI systems read, Markdown, atomic writes."""

import json
import os
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from vsock_fuzz.engines import check
from vsock_fuzz.cli import report
from vsock_fuzz.cli import main
from vsock_fuzz.case.layout import assemble, linux_tx
from vsock_fuzz.oracles import ORACLES, evaluate
from vsock_fuzz.targets import ModelTarget, PythonTarget
from vsock_fuzz.model.answer import Answer

SCHEMA = report.schema()


def schema_errors(rep):
    return sorted(e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(rep))


def check_report(tmp_path, spec="reference:rust-vmm", *extra):
    paths = {k: tmp_path / f"r.{k}" for k in ("json", "xml", "md")}
    code = main(["check", "--target", spec, "-q", "--json", str(paths["json"]), "--junit", str(paths["xml"]),
                 "--markdown", str(paths["md"]), *extra])
    return code, json.loads(paths["json"].read_text()), ET.parse(paths["xml"]).getroot(), paths["md"].read_text()


def fuzz_like_report(findings, exit_code=1):
    rep = report.new("fuzz", ModelTarget("rust-vmm"), spec="reference:rust-vmm", argv=["fuzz"])
    rep["findings"] = [report.finding_entry(f, path=f"out/{f.oracle}.bin", count=3) for f in findings]
    return report.finish(rep, exit_code=exit_code, stats={"cases": 10, "seconds": 0.5})


def rust_vmm_findings():
    _, findings = evaluate(ModelTarget("rust-vmm"), assemble(linux_tx("6.17", 40000)))
    assert findings
    return findings


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["schema_version"] == {"const": report.SCHEMA_VERSION}


def test_check_report_validates(tmp_path):
    code, rep, _, _ = check_report(tmp_path)
    assert code == 1
    assert schema_errors(rep) == [] and report.validate(rep) == []
    assert rep["command"] == "check" and rep["status"] == "fail" and rep["exit_code"] == 1
    assert rep["target"] == {"spec": "reference:rust-vmm", "name": "reference:rust-vmm", "version": report.__version__,
                             "device": {"source": "assumed"}}
    assert len(rep["rows"]) == len(check.rows())
    assert rep["families"]["interop"]["verdict"] == "fail" and rep["families"]["safety"]["verdict"] == "pass"
    assert set(rep["oracles"]) == set(ORACLES)
    f = next(f for f in rep["findings"] if f["family"] == "interop")
    assert f["row"].startswith("tx/linux-6.17") and f["rule"] and f["reproducer"]["command"]


def test_clean_and_error_reports_validate(tmp_path):
    code, rep, _, _ = check_report(tmp_path, "reference")
    assert code == 0 and rep["status"] == "pass" and rep["findings"] == []
    assert schema_errors(rep) == [] and report.validate(rep) == []
    code, rep, suite, md = check_report(tmp_path, "cmd:/nonexistent/adapter")
    assert code == 2 and rep["status"] == "error"
    assert schema_errors(rep) == [] and report.validate(rep) == []
    assert suite.get("errors") == "1" and suite.find("testsuite/testcase/error") is not None
    assert "error" in md


def test_fuzz_report_validates():
    rep = fuzz_like_report(rust_vmm_findings())
    assert rep["fail_on"] == "error"
    assert schema_errors(rep) == [] and report.validate(rep) == []
    assert rep["families"]["interop"] == {"verdict": "fail", "findings": 1}
    assert rep["families"]["differential"]["verdict"] == "warn"
    strict = report.new("fuzz", None, spec="x", fail_on="warning")
    strict["findings"] = rep["findings"]
    assert report.finish(strict, exit_code=1)["families"]["differential"]["verdict"] == "fail"
    f = rep["findings"][0]
    assert f["reproducer"]["path"].endswith(".bin") and f["reproducer"]["path"] in f["reproducer"]["command"]


@pytest.mark.parametrize("breakage", [
    lambda r: r.pop("target"),
    lambda r: r.update(schema_version=2),
    lambda r: r["findings"][0].update(severity="fatal"),
    lambda r: r["findings"][0]["reproducer"].pop("command"),
    lambda r: r["rows"][0].update(verdict="ok"),
    lambda r: r.update(started="yesterday"),
    lambda r: r["stats"].update(cases="many"),
])
def test_a_broken_report_fails_both_validators(tmp_path, breakage):
    _, rep, _, _ = check_report(tmp_path)
    breakage(rep)
    assert schema_errors(rep)
    assert report.validate(rep)


# --- JUnit ------------------------------------------------------------------------

def assert_junit_shape(root):
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    for attr in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp"):
        assert attr in suite.attrib, attr
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == int(root.get("tests"))
    assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
    assert int(suite.get("errors")) == sum(1 for c in cases if c.find("error") is not None)
    for c in cases:
        assert c.get("classname") and c.get("name") and c.get("time") is not None
        assert set(child.tag for child in c) <= {"failure", "error", "skipped", "system-out", "system-err"}
        for f in c.findall("failure"):
            assert f.get("message") and f.get("type")
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert {"target.name", "target.version", "profile"} <= set(props)
    return cases


def test_junit_has_one_case_per_row(tmp_path):
    _, rep, root, _ = check_report(tmp_path)
    cases = assert_junit_shape(root)
    assert [c.get("name") for c in cases] == [r["name"] for r in rep["rows"]]
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {r["name"] for r in rep["rows"] if r["verdict"] == "fail"}
    assert all(n.startswith("tx/linux-6.17/") for n in failed)


def test_junit_has_one_case_per_oracle():
    rep = fuzz_like_report(rust_vmm_findings())
    cases = assert_junit_shape(ET.fromstring(report.to_junit(rep)))
    assert {c.get("name") for c in cases} == set(ORACLES)
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {f["oracle"] for f in rep["findings"] if f["severity"] in ("error", "critical")}
    # A warning oracle that fired is listed, not failed.
    diff = next(c for c in cases if c.get("name") == "differential.model")
    assert diff.find("failure") is None and "reproduce" in diff.find("system-out").text


# --- Markdown and writing ----------------------------------------------------------

def test_markdown_summary(tmp_path):
    _, rep, _, md = check_report(tmp_path)
    assert md.startswith("## vsock-fuzz check: ❌ fail")
    assert "| interop | ❌ fail |" in md and "| safety | ✅ pass |" in md
    assert "`tx/linux-6.17/33KiB`" in md
    clean = report.to_markdown(fuzz_like_report([], exit_code=0))
    assert "✅ pass" in clean and "### Findings" not in clean


def test_writes_are_atomic_and_step_summary_is_appended(tmp_path, monkeypatch):
    rep = fuzz_like_report(rust_vmm_findings())
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    written = report.write_reports(rep, json_path=str(tmp_path / "a.json"), junit_path=str(tmp_path / "a.xml"),
                                   markdown_path=str(summary))
    assert len(written) == 3
    assert summary.read_text().startswith("earlier step\n## vsock-fuzz fuzz")
    assert json.loads((tmp_path / "a.json").read_text()) == rep
    assert sorted(os.listdir(tmp_path)) == ["a.json", "a.xml", "summary.md"]  # no temporary files left


def test_python_target_version_reaches_the_report():
    def parse_fn(case):
        return Answer.reject("X", "chain")
    parse_fn.version = "9.9"
    rep = report.new("replay", PythonTarget(parse_fn, "py:m:f"), spec="py:m:f")
    assert rep["target"] == {"spec": "py:m:f", "name": "py:m:f", "version": "9.9"}


def test_replay_writes_reports(tmp_path):
    paths = {k: tmp_path / f"r.{k}" for k in ("json", "xml", "md")}
    assert main(["replay", "--target", "reference:rust-vmm", "-q", "corpus/tx", "--json", str(paths["json"]),
                 "--junit", str(paths["xml"]), "--markdown", str(paths["md"])]) == 1
    rep = json.loads(paths["json"].read_text())
    assert schema_errors(rep) == [] and report.validate(rep) == []
    assert rep["command"] == "replay" and rep["families"]["interop"]["verdict"] == "fail"
    f = next(f for f in rep["findings"] if f["family"] == "interop")
    assert f["reproducer"]["path"].startswith("corpus/tx/")
    assert f["reproducer"]["command"].startswith("vsock-fuzz replay --target reference:rust-vmm corpus/tx/")
    cases = assert_junit_shape(ET.parse(paths["xml"]).getroot())
    # One test case per root cause: the 6.17 multi-fragment layout rust-vmm rejects is one.
    assert any(c.get("name").startswith("interop.linux-rejected: rejects the Linux >= 6.17 multi-fragment tx")
               and c.find("failure") is not None for c in cases)
    assert len(cases) == len(rep["root_causes"]) < len(rep["findings"])
    assert "## vsock-fuzz replay: ❌ fail" in paths["md"].read_text() and "### Root causes" in paths["md"].read_text()
