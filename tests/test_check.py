"""`vsock-fuzz check`: the matrix is clean on the model, shows exactly the
rust-vmm crate's documented gaps, and fails targets that break its rows."""

import json
import re
import shlex

import pytest

from vsock_fuzz.engines import check
from vsock_fuzz.model.answer import Answer
from vsock_fuzz.cli import main
from vsock_fuzz.case.wire import HEADER_SIZE
from vsock_fuzz.case.layout import Buf, Layout, assemble, linux_tx
from vsock_fuzz.model.packet import parse
from vsock_fuzz.targets import ModelTarget, PythonTarget


def run(parse_fn, **kw):
    return check.run(PythonTarget(parse_fn, "test"), **kw)


def by_name(results):
    return {r.row.name: r for r in results}


# --- the matrix itself ----------------------------------------------------------

def test_rows_cover_the_issue_families():
    names = [r.name for r in check.rows()]
    assert len(names) == len(set(names)), "row names are unique (they are --row keys and JUnit names)"
    for version in ("5.x", "6.2", "6.17"):
        for via in ("", "/indirect"):
            for size in ("33KiB", "64KiB"):
                assert f"tx/linux-{version}/{size}{via}" in names
            assert f"rx/linux-{version}{via}" in names
    assert {f"tx/header-split@{k}" for k in range(1, HEADER_SIZE)} <= set(names)
    groups = {r.group for r in check.rows()}
    assert {"linux-tx", "linux-rx", "header-split", "pieces", "long-chain", "region-end", "regions", "misaligned",
            "data-len", "max-data-size", "direction", "chain", "queue", "indirect"} <= groups
    assert {r.expect for r in check.rows()} == set(check.EXPECTS) - {"any"}
    # "any": what a device that did not offer VIRTIO_F_INDIRECT_DESC may do as it likes.
    from vsock_fuzz.model.device import Device
    assert "any" in {r.expect for r in check.rows(Device(features=frozenset(), source="hello"))}
    assert all(r.rule for r in check.rows())


def test_rows_are_deterministic():
    again = check.build_rows()
    assert [(r.name, r.case, r.slices) for r in again] == [(r.name, r.case, r.slices) for r in check.rows()]


def test_6_17_rows_are_page_fragments():
    row = {r.name: r for r in check.rows()}["tx/linux-6.17/64KiB"]
    header, data = row.slices
    assert sum(n for _, n in header) == HEADER_SIZE
    assert sum(n for _, n in data) == 64 * 1024
    # Expected slices come from the laid-out buffers: 1 header + 16 page descriptors.
    bufs = check.laid_out(linux_tx("6.17", 64 * 1024), row.case)
    assert [n for _, n, _ in bufs] == [HEADER_SIZE] + [4096] * 16


def test_expected_slices_are_cut_at_region_boundaries():
    row = {r.name: r for r in check.rows()}["tx/data-crosses-regions"]
    header, data = row.slices
    assert data == ((0x10000 - 40, 40), (0x10000, 60))


def test_expected_slices_follow_the_buffers_not_the_model():
    # An explicit layout: header split 10/34 over two misaligned buffers, data after it.
    lay = Layout("tx", (Buf(10, addr=0x9001), Buf(34 + 5, addr=0x9101)),
                 header=check.HDR._replace(len=5))
    header, data = check.expected_slices(lay, assemble(lay))
    assert header == ((0x9001, 10), (0x9101, 34))
    assert data == ((0x9101 + 34, 5),)


# --- the reference under both profiles -------------------------------------------

def test_reference_is_clean(capsys):
    assert main(["check", "--target", "reference"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    for fam in check.FAMILIES:
        assert f"{fam}" in out
    results = check.run(ModelTarget("spec"))
    assert {r.verdict for r in results} == {"pass"}
    assert not any(r.findings for r in results)


def test_rust_vmm_shows_exactly_its_documented_gaps(capsys):
    assert main(["check", "--target", "reference:rust-vmm"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^tx/linux-6.17/33KiB +interop +accept +reject DescriptorLengthTooSmall +FAIL$", out, re.M)
    # Not using a malformed tail is leniency, never safety: the table blames conformance.
    assert re.search(r"^rx/readable-slip@2 +conformance +reject +accept +warn$", out, re.M)
    assert re.search(r"^safety +pass", out, re.M)
    results = check.run(ModelTarget("rust-vmm"))
    failed = {r.row.name for r in results if r.verdict == "fail"}
    # Cloud Hypervisor #7672 / libkrun #535 class: multi-fragment tx (Linux >= 6.17) rejected.
    assert failed == {f"tx/linux-6.17/{s}{v}" for s in ("33KiB", "64KiB") for v in ("", "/indirect")}
    fams = check.family_verdicts(results)
    assert fams["safety"]["verdict"] == fams["fidelity"]["verdict"] == "pass"
    assert fams["interop"]["verdict"] == "fail"
    warned = {r.row.name: r for r in results if r.verdict == "warn"}
    # Region-crossing buffers rejected (FragmentedMemory), split headers and pieces rejected.
    assert {"tx/data-crosses-regions", "tx/header-crosses-regions", "rx/crosses-regions",
            "tx/header-split@1", "tx/data-1-byte-pieces"} <= set(warned)
    assert warned["tx/data-crosses-regions"].answer.error == "FragmentedMemory"
    for r in warned.values():
        assert {f for f, _ in r.issues} | {f.family for f in r.findings} <= {"conformance", "differential"}
    # Everything the crate does as the spec says still passes: every earlier Linux layout.
    for r in results:
        if r.row.group in ("linux-tx", "linux-rx") and "6.17/33" not in r.row.name and "6.17/64" not in r.row.name:
            assert r.verdict == "pass", r.row.name


def test_profile_rust_vmm_silences_differential_only():
    results = check.run(ModelTarget("rust-vmm"), profile="rust-vmm")
    assert not any(f.family == "differential" for r in results for f in r.findings)
    assert check.family_verdicts(results)["interop"]["verdict"] == "fail"


def test_strict_fails_on_warnings():
    results = check.run(ModelTarget("rust-vmm"), profile="rust-vmm", strict=True)
    fams = check.family_verdicts(results, strict=True)
    assert fams["conformance"]["verdict"] == "fail"
    assert main(["check", "--target", "reference:rust-vmm", "--profile", "rust-vmm", "--strict", "-q"]) == 1


# --- targets that break rows -------------------------------------------------------

def test_a_target_that_rejects_everything_fails_interop():
    results = by_name(run(lambda case: Answer.reject("Nope", "chain")))
    assert results["rx/linux-5.x"].verdict == "fail"
    assert results["tx/linux-6.2/0B"].verdict == "fail"          # an empty packet is laid out one way only
    # It refuses the same header in every Linux layout: that is no layout's fault (interop.content_rejection).
    assert results["tx/linux-6.2/1KiB"].verdict == "warn"
    assert [fam for fam, _ in results["tx/linux-6.2/1KiB"].issues] == ["differential"]
    assert results["tx/header-split@7"].verdict == "warn"       # 2.6.4: a device MAY limit descriptors
    assert results["tx/loop-at-head"].verdict == "pass"          # rejecting a malformed chain is right


def test_wrong_slices_on_a_linux_layout_fail_interop():
    def off_by_one(case):
        a = parse(case)
        if a.ok and a.data_slices:
            (addr, n), *rest = a.data_slices
            return a.__class__(True, a.header, a.header_slices, ((addr + 1, n), *rest))
        return a
    results = by_name(run(off_by_one))
    row = results["tx/linux-5.x/1KiB"]
    assert row.verdict == "fail"
    assert any(f == "interop" and "data slices" in m for f, m in row.issues)
    assert results["tx/linux-5.x/0B"].verdict == "pass"


def test_a_crash_is_a_safety_failure():
    def crashes_on_queue_size_0(case):
        if case.ring.size == 0:
            raise ZeroDivisionError("virtio-queue #173")
        return parse(case)
    results = by_name(run(crashes_on_queue_size_0))
    row = results["tx/queue-size-0"]
    assert row.got == "crash" and row.verdict == "fail"
    assert any(f.family == "safety" for f in row.findings)
    assert check.family_verdicts(list(results.values()))["safety"]["verdict"] == "fail"


def test_a_region_end_overrun_is_a_safety_failure():
    # CVE-2019-18960 class: the bounds check lets a buffer end one byte past its region.
    def overrun(case):
        a = parse(case)
        if not a.ok and a.error == "InvalidMemoryAccess":
            ok = parse(case._replace(regions=tuple(r._replace(size=r.size + 1) for r in case.regions)))
            return ok
        return a
    results = by_name(run(overrun))
    row = results["tx/data-one-past-region-end"]
    assert row.got == "accept" and row.verdict == "fail"
    assert any(f.family == "safety" for f in row.findings)
    assert results["tx/data-ends-at-region-end"].verdict == "pass"


def test_leniency_on_a_malformed_chain_is_a_warning():
    # Accepts everything the rust-vmm profile accepts, including a chain looping after the packet.
    results = by_name(run(lambda case: parse(case, "rust-vmm")))
    row = results["tx/loop-after-complete-packet"]
    assert row.got == "accept" and row.verdict == "warn"
    assert ("conformance", row.issues[0][1]) == row.issues[0]


# --- a chain shorter than hdr.len, long chains -------------------------------------------

SHORT_ROWS = ("tx/data-one-byte-short", "tx/single-one-byte-short", "tx/data-pieces-last-short")
LONG_ROWS = tuple(f"{q}/{n}-descriptors" for n in (33, 64, 128) for q in ("tx", "rx"))


def test_short_and_long_chain_rows():
    rows = {r.name: r for r in check.rows()}
    for name in SHORT_ROWS:
        row = rows[name]
        assert (row.expect, row.group) == ("reject", "data-len") and "DataTooShort" in row.rule
        assert parse(row.case).error == "DataTooShort"
    layouts = {s.name: s.layout for s in check.SPECS}
    for name in LONG_ROWS:
        row = rows[name]
        assert (row.expect, row.family) == ("either", "conformance") and row.case.ring.size >= 128
        assert len(check.laid_out(layouts[name], row.case)) == int(name.split("/")[1].split("-")[0])
        assert parse(row.case).ok
    # A queue smaller than the chain: no driver can give it, so the row is not given.
    from vsock_fuzz.model.device import Device
    small = Device(features=frozenset({"VIRTIO_F_INDIRECT_DESC"}), max_queue_size=64, source="hello")
    specs, skipped = check.for_device(small)
    assert {"tx/128-descriptors", "rx/128-descriptors"} <= set(skipped)
    assert "tx/64-descriptors" in {s.name for s in specs}


def test_a_device_that_trusts_hdr_len_fails_the_short_rows():
    from vsock_fuzz.targets import open_target
    # Truncating the packet to the chain: fidelity.data-len (the zoo's short_data).
    results = by_name(check.run(open_target("py:vsock_fuzz.zoo.short_data:parse"), pattern="data-len|short"))
    for name in SHORT_ROWS:
        assert results[name].verdict == "fail"
        assert "fidelity.data-len" in {f.oracle for f in results[name].findings}

    # Reading hdr.len bytes whatever the descriptor holds: past the chain's buffers.
    from vsock_fuzz.zoo._device import SimpleDevice

    class ReadsOn(SimpleDevice):
        def payload(self, want, room):
            return want  # BUG: no room < want check

    results = by_name(run(ReadsOn().parse, pattern="data-len|short"))
    for name in ("tx/data-one-byte-short", "tx/single-one-byte-short"):
        assert results[name].verdict == "fail"
        assert "safety.slice-in-chain" in {f.oracle for f in results[name].findings}


def test_a_device_with_a_fixed_descriptor_array_fails_the_long_rows():
    from vsock_fuzz.zoo._device import SimpleDevice

    class FixedArray(SimpleDevice):
        fragments = True

        def walk(self, host, ring):
            iov = [None] * 32  # BUG: a fixed array filled without a bound
            for i, d in enumerate(super().walk(host, ring)):
                iov[i] = d
            return [d for d in iov if d]

    results = by_name(run(FixedArray().parse, pattern="descriptors|^tx/linux-6.17/64KiB$"))
    for name in LONG_ROWS:
        assert results[name].got == "crash" and results[name].verdict == "fail", name
    assert results["tx/linux-6.17/64KiB"].verdict == "pass"   # 17 descriptors fit
    # The correct device behind it passes them or refuses them (2.6.4: it MAY limit descriptors).
    results = by_name(run(SimpleDevice().parse, pattern="descriptors"))
    assert {results[n].verdict for n in LONG_ROWS} <= {"pass", "warn"}


# --- the command line ---------------------------------------------------------------

def test_row_filter_and_reproduce_command(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["check", "--target", "reference:rust-vmm", "--row", "^tx/linux-6.17/33KiB$",
                 "--json", str(out)]) == 1
    rep = json.loads(out.read_text())
    assert [r["name"] for r in rep["rows"]] == ["tx/linux-6.17/33KiB"]
    finding = next(f for f in rep["findings"] if f["family"] == "interop")
    argv = shlex.split(finding["reproducer"]["command"])
    assert argv[:2] == ["vsock-fuzz", "check"]
    assert main(argv[1:]) == 1
    assert "tx/linux-6.17/33KiB" in capsys.readouterr().out


def test_out_keeps_findings_as_replayable_files(tmp_path):
    out = tmp_path / "findings"
    rep_path = tmp_path / "r.json"
    assert main(["check", "--target", "reference:rust-vmm", "--row", "^tx/linux-6.17/64KiB$",
                 "--out", str(out), "--json", str(rep_path)]) == 1
    rep = json.loads(rep_path.read_text())
    for f in rep["findings"]:
        path = f["reproducer"]["path"]
        assert path and path.endswith(".bin") and (tmp_path / "findings" / path.rsplit("/", 1)[1]).exists()
        assert path in f["reproducer"]["command"]


def test_target_error_exits_2(tmp_path, capsys):
    rep_path = tmp_path / "r.json"
    assert main(["check", "--target", "cmd:/nonexistent/adapter", "--json", str(rep_path)]) == 2
    assert "cannot start" in capsys.readouterr().err
    rep = json.loads(rep_path.read_text())
    assert rep["status"] == "error" and rep["exit_code"] == 2 and "cannot start" in rep["error"]


def test_no_matching_row_is_a_usage_error(capsys):
    assert main(["check", "--target", "reference", "--row", "^no-such-row$"]) == 2


def test_list_prints_rows_and_rules(capsys):
    assert main(["check", "--target", "reference", "--list"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == len(check.rows())
    assert "CVE-2019-18960" in out
    assert main(["check", "--list"]) == 0  # listing runs nothing: no target needed
    assert capsys.readouterr().out == out


def test_a_run_without_a_target_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", "-q"])
    assert e.value.code == 2
    assert "required: --target" in capsys.readouterr().err


ZOO_REGION_END = "py:vsock_fuzz.zoo.region_end:parse"


def test_quiet_shows_failing_rows_and_causes_at_fail_on_only(capsys):
    assert main(["check", "--target", ZOO_REGION_END, "-q"]) == 1
    out = capsys.readouterr().out
    table = [ln for ln in out[:out.index("\n\n")].splitlines()[1:] if not ln.startswith("  ")]  # not the whys
    assert table and all(ln.endswith(" FAIL") for ln in table)  # no warn row
    assert re.search(r"^differential +warn ", out, re.M)  # the family lines stay
    assert "below --fail-on not listed (-q)" in out and "below --fail-on, by family" not in out
    assert main(["check", "--target", ZOO_REGION_END, "-q", "--fail-on", "warning"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^\S+ +\S+ +\S+ +.* warn$", out, re.M)  # at --fail-on warning a warn row fails
    assert main(["check", "--target", "reference", "-q"]) == 0
    assert "(no row fails)" in capsys.readouterr().out


def test_family_counts_add_up_with_the_root_causes(tmp_path, capsys):
    assert main(["check", "--target", ZOO_REGION_END, "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    causes = json.loads((tmp_path / "r.json").read_text())["root_causes"]
    from vsock_fuzz.zoo.region_end import parse as region_end
    results = check.run(PythonTarget(region_end, "region_end"))
    fams = check.family_verdicts(results)
    assert sum(v["findings"] for v in fams.values()) == sum(c["findings"] for c in causes)
    for fam, v in fams.items():
        own = [c for c in causes if c["oracle"].split(".")[0] == fam]
        assert v["root_causes"] == len(own), fam
        # A cause's findings: its family's own, and the consequences it stands for, of other families.
        assert v["findings"] - v["consequences"] == sum(
            sum(1 for f in r.findings if f.family == fam and not (f.cause and f.cause[0].split(".")[0] != fam))
            for r in results), fam
    assert re.search(r"^safety +FAIL +8 findings in 3 root cause\(s\); 8 rows flagged", out, re.M)
    assert re.search(r"^differential +warn +\d+ findings \(\d+ in 2 root cause\(s\)\), \d+ consequences of other "
                     r"families' root causes", out, re.M)
    assert re.search(r"^   6 distinct finding\(s\) \(2 of them its consequences\), 4 case\(s\)", out, re.M)


@pytest.mark.parametrize("spec", ["cmd:python -m vsock_fuzz serve"])
def test_matrix_through_the_protocol_matches_in_process(spec):
    from vsock_fuzz.targets import open_target
    import sys
    target = open_target(spec.replace("python", shlex.quote(sys.executable)))
    try:
        remote = check.run(target, pattern="^tx/linux|^rx/|queue-size-0|loop-at-head")
    finally:
        target.close()
    local = check.run(ModelTarget("spec"), pattern="^tx/linux|^rx/|queue-size-0|loop-at-head")
    assert [(r.row.name, r.got, r.verdict) for r in remote] == [(r.row.name, r.got, r.verdict) for r in local]
    assert {r.verdict for r in remote} == {"pass"}


# --- the bug zoo ------------------------------------------------------------------------

# The row each zoo bug must fail, besides whatever else it breaks.
ZOO_ROWS = {
    "region_end": "tx/data-one-past-region-end",
    "two_desc": "tx/linux-6.2/1KiB",
    "multi_frag": "tx/linux-6.17/33KiB",
    "loop_hang": "tx/loop-at-head",
    "queue_zero": "tx/queue-size-0",
    "rx_readable": "rx/readable-slip@1",
    "tx_writable": "tx/writable-slip-in-indirect-table",
    "max_len": "tx/hdr.len=max_data_size+1(4096)",
    "short_data": "tx/data-1-byte-pieces",
    "header_swap": "tx/linux-5.x/1KiB",
}


def zoo_params():
    from vsock_fuzz.zoo import ZOO
    return [pytest.param(name, module, family, id=name) for name, module, family in ZOO]


@pytest.mark.parametrize("name,module,family", zoo_params())
def test_every_zoo_target_fails_the_rows_its_bug_breaks(name, module, family):
    from vsock_fuzz.zoo import ORACLE
    from vsock_fuzz.targets import open_target
    results = check.run(open_target(f"py:{module}:parse"))
    assert check.family_verdicts(results)[family]["verdict"] == "fail"
    fired = {f.oracle for r in results for f in r.findings}
    assert ORACLE[name] in fired
    if name in ZOO_ROWS:
        assert by_name(results)[ZOO_ROWS[name]].verdict == "fail"
    assert check.family_verdicts(results)["safety"]["verdict"] == ("fail" if family == "safety" else "pass")


def test_a_zoo_program_fails_check_through_the_protocol(capsys):
    import sys
    spec = f"cmd:{shlex.quote(sys.executable)} -m vsock_fuzz.zoo.region_end"
    assert main(["check", "--target", spec, "-q", "--row", "region-end|^tx/linux-5"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^tx/data-one-past-region-end +safety +reject +accept +FAIL$", out, re.M)
    assert "safety.slice-in-region (critical)" in out  # why it fails, under the table
