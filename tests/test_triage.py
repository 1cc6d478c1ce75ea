"""Root causes (oracles/triage.py): many findings of one bug are one entry, two bugs under one
oracle are two, and a campaign into the same output directory says which are new."""

import json
import subprocess
import sys

from vsock_fuzz.engines import check
from vsock_fuzz.oracles.triage import essential, group, of_findings
from vsock_fuzz.targets import open_target
from vsock_fuzz.zoo._device import SimpleDevice


def causes_of(spec: str, profile: str = "spec"):
    target = open_target(spec)
    try:
        found = [(f, None, None) for r in check.run(target, profile=profile) for f in r.findings]
    finally:
        target.close()
    return found, of_findings(found)


def test_two_bugs_under_one_oracle_are_two_root_causes():
    """two_desc rejects the Linux >= 6.2 single-descriptor packet (vm-virtio #204) and, as a device
    with one data descriptor, the >= 6.17 multi-fragment one (Cloud Hypervisor #7672): fixed in
    different releases upstream, so two root causes, each covering its direct and indirect rows."""
    _, causes = causes_of("py:vsock_fuzz.zoo.two_desc:parse")
    linux = sorted(c.title for c in causes if c.oracle == "interop.linux-rejected")
    assert any(">= 6.2 tx" in t for t in linux) and any(">= 6.17 multi-fragment tx" in t for t in linux)
    assert any(">= 6.2 rx" in t for t in linux)
    assert not any("< 6.2" in t for t in linux)  # the layout it accepts is no cause


class TwoRegionSlips(SimpleDevice):
    """Checks only the first byte of a tx header and of an rx data buffer: two slice-in-region bugs."""
    name = "two region slips"

    def check_span(self, host, addr, n):
        if n == 44 or (n != 16 and self._rx):
            if host.region(addr) is None:
                super().check_span(host, addr, n)
            return
        super().check_span(host, addr, n)

    def _parse(self, case):
        self._rx = case.queue == "rx"
        return super()._parse(case)


two_region_slips = TwoRegionSlips().parse


def test_two_memory_bugs_under_one_oracle_are_two_root_causes():
    _, causes = causes_of("py:tests.test_triage:two_region_slips")
    keys = {c.key for c in causes if c.oracle == "safety.slice-in-region"}
    assert keys == {"safety.slice-in-region:tx:header", "safety.slice-in-region:rx:data"}


def test_one_limit_behind_a_hundred_findings_is_one_root_cause():
    """rust-vmm keeps the header in the head descriptor: 86 header-split rows, two queues."""
    found, causes = causes_of("reference:rust-vmm", "rust-vmm")
    split = [f for f, _, _ in found if f.oracle == "conformance.valid-rejected" and "header split" in f.signature]
    assert len(split) > 80
    titles = [c.title for c in causes if c.oracle == "conformance.valid-rejected" and "header split" in c.title]
    assert sorted(titles) == ["rejects a spec-valid rx chain with header split over N descriptors",
                              "rejects a spec-valid tx chain with header split over N descriptors"]
    assert sum(c.findings for c in causes) == len({(f.key(), id(f.case)) for f, _, _ in found})


def test_a_differential_finding_joins_the_other_oracle_on_its_case():
    items = [{"oracle": "interop.linux-rejected", "severity": "error", "signature": "tx one descriptor (Linux >= 6.2)",
              "queue": "tx", "case_id": "c1", "key": "a"},
             {"oracle": "differential.model", "severity": "warning", "signature": "rejects-accepted X",
              "queue": "tx", "case_id": "c1", "key": "b"},
             {"oracle": "differential.model", "severity": "warning", "signature": "rejects-accepted X",
              "queue": "tx", "case_id": "c2", "key": "c"}]
    causes = group(items)
    assert [(c.oracle, c.findings) for c in causes] == [("interop.linux-rejected", 2), ("differential.model", 1)]
    assert causes[0].severity == "error"


def test_essential_traits_drop_counts_but_keep_what_tells_bugs_apart():
    a = essential("interop.linux-rejected", "tx header + 10 page fragments (Linux >= 6.17)", "tx")
    b = essential("interop.linux-rejected", "tx header + 17 page fragments (Linux >= 6.17)", "tx")
    c = essential("interop.linux-rejected", "tx header + 17 page fragments (Linux >= 6.17) in an indirect table", "tx")
    assert a == b and a[0] != c[0] and ">= 6.17 multi-fragment" in a[1]
    assert essential("conformance.valid-rejected", "header split over 2 descriptors, 3 descriptors", "tx") == \
        essential("conformance.valid-rejected", "header split over 5 descriptors, zero-length descriptors", "tx")
    assert essential("safety.slice-in-region", "data_slices", "rx") != essential("safety.slice-in-region",
                                                                                 "data_slices", "tx")


def fuzz(*args):
    return subprocess.run([sys.executable, "-m", "vsock_fuzz", "fuzz", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_a_second_run_into_the_same_directory_says_what_is_new(tmp_path):
    out = tmp_path / "out"
    common = ("--target", "py:vsock_fuzz.zoo.region_end:parse", "--runs", 3000, "--out", out, "--seed", 1,
              "--minimize-time", 0, "--corpus", "corpus/target", "--fail-on-new")
    first = fuzz(*common, "--json", tmp_path / "1.json")
    assert first.returncode == 1, first.stdout + first.stderr  # the first run knows nothing: its causes are new
    known = json.loads((out / "root-causes.json").read_text())["root_causes"]
    assert any(c["oracle"] == "safety.slice-in-region" for c in known)
    rep = json.loads((tmp_path / "1.json").read_text())
    assert rep["root_causes"] and all(c["new"] is False for c in rep["root_causes"])  # no earlier run to compare
    second = fuzz(*common, "--json", tmp_path / "2.json")
    assert second.returncode == 0, second.stdout  # the same bug again: known, replayed, not failed
    rep = json.loads((tmp_path / "2.json").read_text())
    region = [c for c in rep["root_causes"] if c["oracle"] == "safety.slice-in-region"]
    assert region and not any(c["new"] for c in region)
    assert not any(c["new"] and c["severity"] != "warning" for c in rep["root_causes"])
    # What the second run found that the first did not is tagged as such (a warning here, if any).
    summary = second.stdout.split("== vsock-fuzz summary")[1]
    assert summary.count(" NEW ") == sum(c["new"] for c in rep["root_causes"])
