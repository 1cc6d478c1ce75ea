"""Root causes (oracles/triage.py): many findings of one bug are one entry, two bugs under one
oracle are two, and a campaign into the same output directory says which are new."""

import json
import re
import subprocess
import sys

from vsock_fuzz.case.layout import Buf, Layout, assemble
from vsock_fuzz.case.value import Case
from vsock_fuzz.case.wire import F_INDIRECT, F_WRITE, HEADER_SIZE, Header
from vsock_fuzz.engines import check as check_matrix
from vsock_fuzz.engines.findings import Findings
from vsock_fuzz.engines.worker import Recorder
from vsock_fuzz.model.answer import Answer
from vsock_fuzz.model.packet import parse
from vsock_fuzz.oracles import check, evaluate
from vsock_fuzz.oracles.triage import essential, group, of_findings
from vsock_fuzz.targets import open_target
from vsock_fuzz.zoo._device import SimpleDevice


def causes_of(spec: str, profile: str = "spec"):
    target = open_target(spec)
    try:
        found = [(f, None, None) for r in check_matrix.run(target, profile=profile) for f in r.findings]
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
              "queue": "tx", "key": "a"},
             {"oracle": "differential.model", "severity": "warning", "signature": "rejects-accepted X",
              "queue": "tx", "key": "b", "cause": ["interop.linux-rejected", "tx one descriptor (Linux >= 6.2)"]},
             {"oracle": "differential.model", "severity": "warning", "signature": "rejects-accepted X",
              "queue": "tx", "key": "c"}]
    causes = group(items)
    assert [(c.oracle, c.findings) for c in causes] == [("interop.linux-rejected", 2), ("differential.model", 1)]
    assert causes[0].severity == "error" and causes[0].consequences == ["differential.model"]


END = 1 << 20  # the end of the default layout's one region


def header_past_region() -> Case:
    """A tx header descriptor whose last 24 bytes run past the region (Firecracker CVE-2019-18960)."""
    return assemble(Layout("tx", (Buf(HEADER_SIZE, addr=END - 20), Buf(64)), header=Header(len=64)))


def test_symptoms_of_a_header_read_past_its_region_stand_under_it():
    """A device that read its header from host bytes past the region decodes a huge hdr.len and
    takes data to match: one root cause, slice-in-region, with the rest as its consequences."""
    case = header_past_region()
    bogus = Answer(True, Header(len=100000, src_cid=77), ((END - 20, HEADER_SIZE),), ((END + 48, 100000),))
    found = check(case, bogus, model=parse(case))
    assert {f.oracle for f in found} >= {"safety.slice-in-region", "safety.slice-in-memory", "fidelity.max-data-size"}
    causes = of_findings([(f, None, None) for f in found])
    assert [(c.oracle, c.key) for c in causes] == [("safety.slice-in-region", "safety.slice-in-region:tx:header")]
    assert {"safety.slice-in-memory", "fidelity.max-data-size", "differential.model"} <= set(causes[0].consequences)


def test_a_symptom_without_its_cause_is_a_bug_of_its_own():
    """The same oracle on a case where nothing explains it keeps a key and a root cause of its own."""
    case = assemble(Layout("tx", (Buf(HEADER_SIZE), Buf(100000)), header=Header(len=100000)))
    taken = parse(case._replace(max_data_size=1 << 20))  # the whole payload, as a device without the limit
    alone = check(case, taken, model=parse(case))
    symptom = check(header_past_region(), Answer(True, Header(len=100000), ((END - 20, HEADER_SIZE),),
                                                 ((END + 48, 100000),)), model=parse(header_past_region()))
    own = [f for f in alone if f.oracle == "fidelity.max-data-size"]
    follows = [f for f in symptom if f.oracle == "fidelity.max-data-size"]
    assert own and follows and own[0].key() != follows[0].key() and not own[0].cause
    causes = of_findings([(f, None, None) for f in alone + symptom])
    assert "fidelity.max-data-size" in {c.oracle for c in causes}


class TwoOverreads(SimpleDevice):
    """Trusts hdr.len for the tx data buffer and max_data_size for the rx one (the buffer's own
    length unchecked): safety.slice-in-chain on both queues, two bugs."""
    name = "two over-reads"

    def payload(self, want, room):
        return want

    def rx_packet(self, host, descs, mds):
        addr = descs[0][0]
        return Answer(True, None, ((addr, HEADER_SIZE),), ((addr + HEADER_SIZE, mds),))


two_overreads = TwoOverreads().parse


def test_two_bugs_of_one_oracle_on_two_queues_are_two_entries_whatever_comes_first(tmp_path):
    """The campaign's distinct-finding key holds the queue: an rx finding seen first cannot hide
    the tx one behind its key, nor the other way round."""
    target = open_target("py:tests.test_triage:two_overreads")
    cases = {"tx": assemble(Layout("tx", (Buf(HEADER_SIZE), Buf(16)), header=Header(len=64))),
             "rx": assemble(Layout("rx", (Buf(HEADER_SIZE + 100, F_WRITE),)))}
    found = {q: evaluate(target, case)[1] for q, case in cases.items()}
    for order in (("tx", "rx"), ("rx", "tx")):
        out = tmp_path / "-".join(order)
        out.mkdir()
        sent = []
        recorder = Recorder(str(out), sent.append)
        for queue in order:
            recorder.record(found[queue])
        store = Findings("error")
        for message in sent:
            store.add(message["finding"], 0.0, "atheris")
        chain = [c for c in store.root_causes({}, "T") if c.oracle == "safety.slice-in-chain"]
        assert sorted(c.key for c in chain) == ["safety.slice-in-chain:rx:data", "safety.slice-in-chain:tx:data"]
        assert all(c.severity == "critical" and c.reproducer for c in chain)


def test_essential_traits_drop_counts_but_keep_what_tells_bugs_apart():
    a = essential("interop.linux-rejected", "tx header + 10 page fragments (Linux >= 6.17)", "tx")
    b = essential("interop.linux-rejected", "tx header + 17 page fragments (Linux >= 6.17)", "tx")
    c = essential("interop.linux-rejected", "tx header + 17 page fragments (Linux >= 6.17) in an indirect table", "tx")
    # Direct or in an indirect table is one layout refused (one root cause), named as first seen.
    assert a == b and a[0] == c[0] and ">= 6.17 multi-fragment" in a[1] and "indirect" in c[1]
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
    first_keys = {c["key"] for c in rep["root_causes"]}
    second = fuzz(*common, "--json", tmp_path / "2.json")
    rep = json.loads((tmp_path / "2.json").read_text())
    # What the first run found is known (replayed from its corpus, not failed); anything else is new.
    assert first_keys & {c["key"] for c in rep["root_causes"] if c["oracle"] == "safety.slice-in-region"}
    assert all(c["new"] == (c["key"] not in first_keys) for c in rep["root_causes"])
    new_failing = [c for c in rep["root_causes"] if c["new"] and c["severity"] != "warning"]
    assert second.returncode == (1 if new_failing else 0), second.stdout
    summary = second.stdout.split("== vsock-fuzz summary")[1]
    # (the causes below --fail-on are counted per family: "- conformance: 3 (warning), 2 NEW")
    shown = summary.count("  NEW\n") + sum(int(n) for n in re.findall(r", (\d+) NEW$", summary, re.M))
    assert shown == sum(c["new"] for c in rep["root_causes"])


def test_known_root_causes_are_per_target(tmp_path):
    from vsock_fuzz.engines.campaign import CAUSES_FILE, known_causes, save_causes
    from vsock_fuzz.oracles.triage import RootCause
    out, a, b = str(tmp_path), "py:dev_a:parse", "py:dev_b:parse"
    bug = RootCause("safety.slice-in-region:tx:data", "safety.slice-in-region", "critical", "t", "r")
    assert known_causes(out, a) is None  # no earlier run: nothing is new
    save_causes(out, [bug], None, a)
    assert known_causes(out, a) == {bug.key}
    assert known_causes(out, b) is None  # b's first run here: a's bug is not b's
    save_causes(out, [], None, b)  # b ran and found nothing: recorded, so its next bug is new
    assert known_causes(out, b) == set() and known_causes(out, a) == {bug.key}
    save_causes(out, [], {bug.key}, a)  # a's earlier causes stay when a run does not see them
    assert known_causes(out, a) == {bug.key} and known_causes(out, b) == set()
    # A file from before causes named their target: one target's causes, taken as the next one's.
    (tmp_path / CAUSES_FILE).write_text(json.dumps({"root_causes": [{"key": "k0"}]}))
    assert known_causes(out, b) == {"k0"}
    save_causes(out, [bug], known_causes(out, b), b)
    assert known_causes(out, b) == {"k0", bug.key} and known_causes(out, a) is None
    (tmp_path / CAUSES_FILE).write_text("{")
    assert known_causes(out, a) is None


class IgnoresIndirectWritesReadable(SimpleDevice):
    """libkrun's shape: no VIRTIO_F_INDIRECT_DESC offered, the flag ignored, and rx written into a
    buffer whatever its direction (spec 2.7.4.1)."""
    name = "ignores INDIRECT, writes readable buffers"
    device = {"features": ["VIRTIO_F_VERSION_1"]}
    tables = False

    def check_direction(self, flags, rx):
        if not rx:
            super().check_direction(flags, rx)


ignores_indirect = IgnoresIndirectWritesReadable().parse


def test_a_finding_is_named_by_the_reading_that_explains_the_answer():
    """Read as a table, the device wrote outside the chain; read as the plain buffer the device
    takes it for, it wrote a device-readable buffer. Both critical: the reading whose chain holds
    what the device wrote explains it, so the finding is safety.direction."""
    target = open_target("py:tests.test_triage:ignores_indirect")
    case = assemble(Layout("rx", (Buf(HEADER_SIZE + 100, F_INDIRECT),)))
    answer, found = evaluate(target, case)
    assert answer.ok
    assert "safety.direction" in {f.oracle for f in found}
    assert "safety.slice-in-chain" not in {f.oracle for f in found}
