"""Accepted departures (--accept, oracles/accepted.py): a root cause a device keeps on purpose is
listed, not failed, in check, replay and fuzz; a bad file is a usage error naming the problem."""

import json
import subprocess
import sys


def vsock_fuzz(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "vsock_fuzz", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_check_lists_an_accepted_limit_and_passes(tmp_path):
    """rust-vmm refuses Linux >= 6.17 multi-fragment tx (its documented limit): accepted, check passes."""
    accept = tmp_path / "accept.json"
    first = vsock_fuzz("check", "--target", "reference:rust-vmm", "--profile", "rust-vmm", "-q",
                       "--write-accept", accept)
    assert first.returncode == 1, first.stdout
    entries = json.loads(accept.read_text())["accepted"]
    assert entries and all(e["key"].startswith("interop.linux-rejected:tx:") for e in entries)
    second = vsock_fuzz("check", "--target", "reference:rust-vmm", "--profile", "rust-vmm", "-q",
                        "--accept", accept, "--json", tmp_path / "r.json")
    assert second.returncode == 0, second.stdout
    assert f"{len(entries)} accepted root cause(s)" in second.stdout
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["families"]["interop"]["verdict"] == "pass"
    listed = [c for c in rep["root_causes"] if "accepted" in c]
    assert {c["key"] for c in listed} == {e["key"] for e in entries}
    # Accepting a limit hides nothing else: the same file does not pass a device with a safety bug.
    other = vsock_fuzz("check", "--target", "py:vsock_fuzz.zoo.region_end:parse", "-q", "--accept", accept)
    assert other.returncode == 1 and "safety.slice-in-region" in other.stdout


def test_a_bad_accept_file_is_a_usage_error_naming_it(tmp_path):
    bad = tmp_path / "accept.json"
    for text, says in (("{", "is not JSON"), ('{"accepted": [{"key": "x"}]}', 'non-empty "reason"'),
                       ("[]", "expected")):
        bad.write_text(text)
        r = vsock_fuzz("check", "--target", "reference", "--accept", bad)
        assert r.returncode == 2 and says in r.stderr and str(bad) in r.stderr, r.stderr
    r = vsock_fuzz("replay", "--target", "reference", "corpus/target", "--accept", tmp_path / "missing.json")
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_a_campaign_fails_on_what_is_not_accepted_only(tmp_path):
    common = ("fuzz", "--target", "py:vsock_fuzz.zoo.region_end:parse", "--runs", 3000, "--seed", 1,
              "--minimize-time", 0, "--corpus", "corpus/target")
    accept = tmp_path / "accept.json"
    first = vsock_fuzz(*common, "--out", tmp_path / "a", "--write-accept", accept)
    assert first.returncode == 1, first.stdout + first.stderr
    keys = [e["key"] for e in json.loads(accept.read_text())["accepted"]]
    assert "safety.slice-in-region:tx:header" in keys
    second = vsock_fuzz(*common, "--out", tmp_path / "b", "--accept", accept, "--json", tmp_path / "r.json",
                        "--sarif", tmp_path / "r.sarif")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "accepted root cause(s) (--accept), listed, not failed" in second.stdout
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["families"]["safety"]["verdict"] != "fail"
    sarif = json.loads((tmp_path / "r.sarif").read_text())
    region = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "safety.slice-in-region"]
    assert region and all(r.get("suppressions") for r in region)
