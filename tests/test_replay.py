"""corpus/regressions stays fixed: every kept case is clean on the reference model,
and each stored finding still fires its oracle on the zoo target it names.
Also `vsock-fuzz replay`: one line per file and its exit statuses."""

import glob
import json
import os
import shutil
import sys

import pytest

from vsock_fuzz.cli import main
from vsock_fuzz.case.corpus import CorpusError, iter_cases, read_case
from vsock_fuzz.oracles import evaluate
from vsock_fuzz.targets import open_target
from vsock_fuzz.zoo import ORACLE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGRESSIONS = os.path.join(ROOT, "corpus", "regressions")
FINDINGS = sorted(glob.glob(os.path.join(REGRESSIONS, "*.finding.json")))
# Findings against a zoo target are replayed against it; others (a real device's) only on the reference.
ZOO_FINDINGS = [p for p in FINDINGS if "vsock_fuzz.zoo." in (json.load(open(p)).get("target") or "")]


def local(spec: str) -> str:
    # A stored `cmd:python3 ...` runs with this interpreter (the one that has vsock_fuzz).
    return spec.replace("cmd:python3 ", f"cmd:{sys.executable} ", 1)


def test_regressions_are_complete_triples():
    assert len(FINDINGS) >= len(ORACLE)  # at least one per zoo bug
    for path in FINDINGS:
        stem = path[:-len(".finding.json")]
        cases = {read_case(stem + ext).case for ext in (".bin", ".json", ".finding.json")}
        assert len(cases) == 1, f"{stem}: its three files disagree"


def test_every_zoo_bug_has_a_regression():
    kept = {json.load(open(p))["target"] for p in FINDINGS}
    for name in ORACLE:
        assert any(f"vsock_fuzz.zoo.{name}" in t for t in kept), name


def test_regressions_are_clean_on_the_reference():
    target = open_target("reference")
    items = list(iter_cases([REGRESSIONS]))
    assert len(items) == len(FINDINGS)  # one case per finding, read from its .bin
    assert all(item.path.endswith(".bin") for item in items)
    for item in items:
        assert not isinstance(item, CorpusError), item
        _, findings = evaluate(target, item.case)
        assert not findings, f"{item.path}: {[f.message for f in findings]}"


@pytest.mark.parametrize("path", ZOO_FINDINGS, ids=lambda p: os.path.basename(p).split("-")[0] + "-" + p[-20:-13])
def test_stored_finding_fires_on_its_target(path):
    entry = read_case(path)
    spec = entry.finding["target"]
    target = open_target(local(spec))  # a new target: state from other cases cannot help
    try:
        _, findings = evaluate(target, entry.case)
    finally:
        target.close()
    assert entry.finding["oracle"] in {f.oracle for f in findings}


# --- the replay command ---------------------------------------------------------------

def run(capsys, *argv):
    rc = main(["replay", *argv])
    return rc, capsys.readouterr()


def test_replay_clean_corpus_exits_0(capsys):
    rc, out = run(capsys, REGRESSIONS, "--target", "reference")
    lines = out.out.splitlines()
    assert rc == 0
    assert len(lines) == len(FINDINGS) + 1 and all(ln.endswith(".bin: ok") for ln in lines[:-1])
    assert lines[-1].startswith(f"replayed {len(FINDINGS)} case(s) against reference: {len(FINDINGS)} ok")


def test_a_kept_finding_replays_once_from_its_bin_else_json_else_finding(tmp_path, capsys):
    stems = [p[:-len(".finding.json")] for p in FINDINGS[:3]]
    for stem, exts in zip(stems, [(".bin", ".json", ".finding.json"), (".json", ".finding.json"), (".finding.json",)]):
        for ext in exts:
            shutil.copy(stem + ext, tmp_path)
    rc, out = run(capsys, str(tmp_path), "--target", "reference")
    lines = out.out.splitlines()
    assert rc == 0 and sorted(ln.removesuffix(": ok") for ln in lines[:-1]) == \
        sorted(str(tmp_path / os.path.basename(s)) + e for s, e in zip(stems, (".bin", ".json", ".finding.json")))
    assert lines[-1].startswith("replayed 3 case(s) against reference: 3 ok")
    assert "one case per stem" in " ".join(run_help(capsys).split())


def run_help(capsys):
    with pytest.raises(SystemExit):
        main(["replay", "--help"])
    return capsys.readouterr().out


def test_replay_reports_findings_per_file_and_exits_1(capsys):
    rc, out = run(capsys, REGRESSIONS, "--target", "py:vsock_fuzz.zoo.region_end:parse", "-q")
    assert rc == 1
    hit = [ln for ln in out.out.splitlines() if "safety.slice-in-region (critical)" in ln]
    assert hit and all(": finding: " in ln for ln in hit)
    assert "unreadable" in out.out.splitlines()[-1]


def test_fail_on_threshold(capsys):
    files = [p[:-len(".finding.json")] + ".bin" for p in FINDINGS if "fidelity.max-data-size" in p]
    assert files
    rc, out = run(capsys, *files, "--target", "py:vsock_fuzz.zoo.max_len:parse")
    assert rc == 1 and "fidelity.max-data-size (error)" in out.out
    rc, out = run(capsys, *files, "--target", "py:vsock_fuzz.zoo.max_len:parse", "--fail-on", "critical")
    assert rc == 0 and "fidelity.max-data-size (error)" in out.out


def test_damaged_inputs_are_named_and_the_rest_runs(tmp_path, capsys):
    good = sorted(glob.glob(os.path.join(REGRESSIONS, "*.bin")))[:2]
    for p in good:
        shutil.copy(p, tmp_path)
    (tmp_path / "cut.json").write_text('{"op": "parse", "queue": "tx", "memo')
    (tmp_path / "future.json").write_text(json.dumps({"version": 9, "queue": "tx"}))
    rc, out = run(capsys, str(tmp_path), str(tmp_path / "missing"), "--target", "reference")
    lines = out.out.splitlines()
    assert rc == 2
    assert f"{tmp_path / 'cut.json'}: error: truncated JSON" in out.out
    assert f"{tmp_path / 'future.json'}: error: not a valid case: unknown case version 9" in out.out
    assert f"{tmp_path / 'missing'}: error: no such file or directory" in out.out
    assert sum(ln.endswith(": ok") for ln in lines) == 2
    assert lines[-1].endswith("2 ok, 0 with findings, 3 unreadable")


def test_unreadable_inputs_outrank_findings(tmp_path, capsys):
    src = next(p for p in FINDINGS if "safety.slice-in-region" in p)
    shutil.copy(src[:-len(".finding.json")] + ".bin", tmp_path)
    (tmp_path / "bad.json").write_text("[")
    rc, out = run(capsys, str(tmp_path), "--target", "py:vsock_fuzz.zoo.region_end:parse")
    assert rc == 2 and "safety.slice-in-region (critical)" in out.out and "1 unreadable" in out.out


def test_unusable_target_exits_2(capsys):
    rc, out = run(capsys, REGRESSIONS, "--target", "nonsense")
    assert rc == 2 and "unknown target" in out.err
    rc, out = run(capsys, FINDINGS[0], "--target", "cmd:/nonexistent/vsock-target")
    assert rc == 2 and "cannot start" in out.err


def test_interrupt_prints_the_summary_of_what_ran(capsys, monkeypatch):
    import vsock_fuzz.oracles as oracles
    real, calls = oracles.evaluate, []

    def evaluate(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(oracles, "evaluate", evaluate)
    rc, out = run(capsys, REGRESSIONS, "--target", "reference")
    assert rc == 130
    assert out.out.splitlines()[-1].endswith("2 ok, 0 with findings, 0 unreadable (interrupted)")
