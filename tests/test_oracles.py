"""Every oracle fires on an answer that breaks its rule and holds on one that keeps it.

The breaking answers are what a buggy device would say about a real case;
the keeping ones are the model's (spec) answer, or a device's that differs
from the model only where the rule allows.
"""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from vsock_fuzz.model.answer import Answer
from vsock_fuzz.case.binary import decode
from vsock_fuzz.case.value import Region
from vsock_fuzz.case.wire import F_NEXT, F_WRITE
from vsock_fuzz.case.corpus import case_from_json
from vsock_fuzz.case.wire import HEADER_SIZE, Header
from vsock_fuzz.case.layout import LINUX_VERSIONS, Buf, Layout, assemble, linux_rx, linux_tx
from vsock_fuzz.oracles import ORACLES, SEVERITY_ORDER, Finding, check, coalesce, evaluate, normalise, worst
from vsock_fuzz.model.packet import PROFILES, parse
from vsock_fuzz.model.memory import GuestMemory
from vsock_fuzz.targets import ModelTarget, PythonTarget

ROOT = Path(__file__).resolve().parent.parent

R0 = Region(0, 1 << 20)
R1 = Region(1 << 20, 0x10000)  # adjacent to R0: a separate host mapping


def fired(case, answer, **kw):
    return {f.oracle for f in check(case, answer, **kw)}


def tx(payload=10, version="5.x", **kw):
    return assemble(linux_tx(version, payload, **kw))


def model(case, profile="spec"):
    return parse(case, profile)


def with_(answer, **kw):
    return replace(answer, **kw)


# --- one case and one answer per oracle: (case, breaking answer, keeping answer) -----------

def _slice_in_region():
    # The header descriptor straddles R0's end into R1: the spec answer cuts it in two.
    case = assemble(Layout("tx", (Buf(HEADER_SIZE, addr=R0.end - 16), Buf(10)), header=Header(len=10), regions=(R0, R1)))
    good = model(case)
    assert good.ok and len(good.header_slices) == 2
    return case, with_(good, header_slices=((R0.end - 16, HEADER_SIZE),)), good


def _direction():
    # rx: the data buffer is device-readable; the model rejects, a sloppy device writes into it.
    case = assemble(Layout("rx", (Buf(HEADER_SIZE, F_WRITE), Buf(4096))))
    bad = Answer(True, None, ((0x2000, HEADER_SIZE),), ((0x2030, 4096),))
    return case, bad, model(assemble(linux_rx("5.x")))


def _direction_keep():
    case = assemble(linux_rx("5.x"))
    return case, model(case)


def _read_writable():
    # tx: the data buffer is device-writable; the model rejects, a sloppy device reads it as payload.
    case = assemble(Layout("tx", (Buf(HEADER_SIZE), Buf(10, F_WRITE)), header=Header(len=10)))
    bad = Answer(True, Header(len=10), ((0x2000, HEADER_SIZE),), ((0x2030, 10),))
    return case, bad, None


def _read_writable_keep():
    case = assemble(linux_tx("5.x", 10))
    return case, model(case)


def _max_data_size():
    case = assemble(replace(linux_tx("5.x", 100), max_data_size=64))
    assert not model(case).ok
    return case, model(case._replace(max_data_size=1 << 16)), None


def _max_data_size_keep():
    # The oracle reads accepted answers only: keeping it is accepting hdr.len == max_data_size.
    case = assemble(replace(linux_tx("5.x", 64), max_data_size=64))
    good = model(case)
    assert good.ok and good.header.len == case.max_data_size
    return case, good


def _stream_order():
    # Two data descriptors reported in the wrong order.
    case = assemble(Layout("tx", (Buf(HEADER_SIZE), Buf(8), Buf(8)), header=Header(len=16)))
    good = model(case)
    return case, with_(good, data_slices=tuple(reversed(good.data_slices))), good


def _stream_gap():
    # Payload right after the header in the head, and a second descriptor: rust-vmm reads the second.
    case = assemble(Layout("tx", (Buf(HEADER_SIZE + 8), Buf(8)), header=Header(len=8)))
    return case, model(case, "rust-vmm"), model(case)


def _slice_overlap():
    case = tx(10)
    good = model(case)
    (ha, _), = good.header_slices
    return case, with_(good, data_slices=((ha + 40, 10),)), good


def _malformed():
    # The data descriptor loops back to the head: rust-vmm never looks past the data.
    case = assemble(Layout("tx", (Buf(HEADER_SIZE), Buf(10, F_NEXT, next=0)), header=Header(len=10)))
    return case, model(case, "rust-vmm"), model(case)


def _valid_rejected():
    case = assemble(Layout("tx", (Buf(20), Buf(24), Buf(10)), header=Header(len=10)))  # header split 20 + 24
    return case, model(case, "rust-vmm"), model(case)


def _linux_rejected():
    case = tx(100, "6.2")
    return case, Answer.reject("DescriptorChainTooShort", "chain", "two descriptors expected"), model(case)


def _linux_slices():
    case = assemble(linux_rx("6.2"))
    good = model(case)
    (a, n), = good.data_slices
    return case, with_(good, data_slices=((a + 100, n - 100),)), good  # data not right after the header


def _header_bytes():
    case = tx(10)
    good = model(case)
    return case, with_(good, header=good.header._replace(op=good.header.type, type=good.header.op)), good


CASES = {
    "safety.crash": lambda: (tx(), Answer.fault("crash", "stopped: killed by SIGSEGV"), model(tx())),
    "safety.hang": lambda: (tx(), Answer.fault("hang", "no answer within 2s"), model(tx())),
    "safety.slice-in-memory": lambda: (tx(), with_(model(tx()), data_slices=((0x200000, 10),)), model(tx())),
    "safety.slice-in-region": _slice_in_region,
    "safety.slice-in-chain": lambda: (tx(), with_(model(tx()), data_slices=((0x9000, 10),)), model(tx())),
    "safety.direction": lambda: _direction()[:2] + (None,),
    "safety.read-writable": _read_writable,
    "fidelity.header-size": lambda: (tx(), with_(model(tx()), header_slices=((0x2000, 40),)), model(tx())),
    "fidelity.header-bytes": _header_bytes,
    "fidelity.data-len": lambda: (tx(), with_(model(tx()), data_slices=((0x2030, 9),)), model(tx())),
    "fidelity.max-data-size": _max_data_size,
    "fidelity.slice-overlap": _slice_overlap,
    "fidelity.stream-order": _stream_order,
    "conformance.stream-gap": _stream_gap,
    "interop.linux-rejected": _linux_rejected,
    "interop.linux-slices": _linux_slices,
    "conformance.valid-rejected": _valid_rejected,
    "conformance.malformed-accepted": _malformed,
}


def test_every_oracle_has_a_firing_case():
    assert set(CASES) | {"differential.model", "determinism.repeat"} == set(ORACLES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_oracle_fires(name):
    case, bad, _ = CASES[name]()
    findings = [f for f in check(case, bad) if f.oracle == name]
    assert findings, f"{name} did not fire on {bad}"
    f = findings[0]
    assert f.severity == ORACLES[name].severity and f.family == name.split(".")[0]
    assert f.rule and f.message and f.case is case and f.answer is bad


@pytest.mark.parametrize("name", sorted(CASES))
def test_oracle_holds(name):
    case, _, good = CASES[name]()
    if good is None:  # the keeping answer belongs to a sibling case
        case, good = {"safety.direction": _direction_keep, "safety.read-writable": _read_writable_keep,
                      "fidelity.max-data-size": _max_data_size_keep}[name]()
    assert name not in fired(case, good)


# The oracles that read only one kind of answer hold above vacuously (their keeping answer is
# of the other kind); these keeping answers are of the kind they read.

def test_malformed_accepted_holds_on_an_accepted_well_formed_chain():
    case = tx(10)  # the loop of _malformed undone: the data descriptor ends the chain
    good = model(case, "rust-vmm")
    assert good.ok
    assert "conformance.malformed-accepted" not in fired(case, good)  # no model answer: the oracle walks


def test_linux_rejected_holds_on_a_rejected_layout_linux_never_sends():
    case, rejected, _ = _valid_rejected()  # header split 20 + 24: spec-valid, not Linux
    assert not rejected.ok and model(case).ok
    got = fired(case, rejected)
    assert "conformance.valid-rejected" in got and "interop.linux-rejected" not in got


def test_valid_rejected_holds_on_a_rejected_linux_layout():
    case, rejected, _ = _linux_rejected()  # the interop oracle's, at error severity
    got = fired(case, rejected)
    assert "interop.linux-rejected" in got and "conformance.valid-rejected" not in got


def test_reading_a_writable_tx_buffer_is_an_error_writing_a_readable_rx_one_critical():
    """2.7.4.1: the device MUST NOT write a device-readable buffer, SHOULD NOT read a device-writable one."""
    case, bad, _ = _read_writable()
    assert not model(case).ok
    found = {f.oracle: f.severity for f in check(case, bad)}
    assert found.get("safety.read-writable") == "error" and "safety.direction" not in found
    case, bad, _ = _direction()
    found = {f.oracle: f.severity for f in check(case, bad)}
    assert found.get("safety.direction") == "critical" and "safety.read-writable" not in found
    assert ORACLES["safety.direction"].word == "MUST NOT" and ORACLES["safety.read-writable"].word == "SHOULD NOT"


def test_region_end_exactly_holds_and_one_past_fires():
    """CVE-2019-18960: a buffer ending exactly at the region end is fine; one byte more is not."""
    regions = (Region(0, 0x10000),)
    at_end = assemble(Layout("tx", (Buf(HEADER_SIZE), Buf(10, addr=0x10000 - 10)), header=Header(len=10), regions=regions))
    good = model(at_end)
    assert good.ok and not check(at_end, good)
    past = assemble(Layout("tx", (Buf(HEADER_SIZE), Buf(10, addr=0x10000 - 9)), header=Header(len=10), regions=regions))
    bad = with_(good, data_slices=((0x10000 - 9, 10),))
    f = next(f for f in check(past, bad) if f.oracle == "safety.slice-in-region")
    assert "runs 1 bytes past the end of region [0x0, 0x10000)" in f.message and "CVE-2019-18960" in f.message


def test_slice_in_chain_lenient_walk_uses_descriptors_before_the_error():
    """A target that accepts a chain with a bad `next` after its data keeps inside the chain;
    one that follows `next` past the queue reads a buffer the chain never gave."""
    case = assemble(Layout("tx", (Buf(HEADER_SIZE), Buf(10, F_NEXT, next=300)), header=Header(len=10)))
    lazy = model(case, "rust-vmm")
    assert lazy.ok
    names = fired(case, lazy)
    assert "conformance.malformed-accepted" in names
    assert not {n for n in names if n.startswith("safety.")}
    assert "safety.slice-in-chain" in fired(case, with_(lazy, data_slices=((0x80000, 10),)))


# --- differential ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["accepts-rejected", "rejects-accepted", "different-slices", "different-header"])
def test_differential_fires_and_classifies(kind):
    case = tx(10)
    good = model(case)
    bad_case = assemble(replace(linux_tx("5.x", 100), max_data_size=64))
    if kind == "accepts-rejected":
        case, target, ref = bad_case, model(bad_case._replace(max_data_size=1 << 16)), model(bad_case)
    elif kind == "rejects-accepted":
        target, ref = Answer.reject("Nope", "chain"), good
    elif kind == "different-slices":
        target, ref = with_(good, data_slices=((0x2031, 10),)), good
    else:
        target, ref = with_(good, header=good.header._replace(fwd_cnt=7)), good
    fs = [f for f in check(case, target, model=ref) if f.oracle == "differential.model"]
    assert [f.signature.split()[0] for f in fs] == [kind]
    assert fs[0].severity == "warning"
    strict = [f for f in check(case, target, model=ref, strict=True) if f.oracle == "differential.model"]
    assert strict[0].severity == "error"


def test_differential_holds_on_merged_pieces_within_one_region():
    """A target that joins contiguous pieces of one region agrees with the model."""
    case = assemble(Layout("tx", (Buf(HEADER_SIZE), Buf(4, addr=0x3000), Buf(6, addr=0x3004)), header=Header(len=10)))
    ref = model(case)
    assert len(ref.data_slices) == 2
    merged = with_(ref, data_slices=((0x3000, 10),))
    assert not check(case, merged, model=ref)


def test_differential_holds_when_both_agree():
    case = tx(10)
    assert not check(case, model(case), model=model(case))


def test_normalise_cuts_at_region_boundaries():
    mem = GuestMemory((R0, R1))
    assert normalise(mem, [(R0.end - 4, 4), (R0.end, 4), (R0.end + 4, 0)]) == ((R0.end - 4, 4), (R0.end, 4))
    assert coalesce([(R0.end - 4, 4), (R0.end, 4)]) == [(R0.end - 4, 8)]


# --- determinism ---------------------------------------------------------------------

def test_determinism_fires_on_a_different_second_answer():
    case = tx(10)
    good = model(case)
    fs = check(case, good, repeat=Answer.reject("Busy", "queue"))
    assert [f.oracle for f in fs] == ["determinism.repeat"]
    assert "first accepted, then rejected with Busy" in fs[0].message


def test_determinism_holds_on_the_same_answer():
    case = tx(10)
    assert not check(case, model(case), repeat=model(case))


def test_a_crash_on_the_repeat_is_a_crash():
    case = tx(10)
    names = fired(case, model(case), repeat=Answer.fault("crash", "exited with status 101"))
    assert names == {"safety.crash", "determinism.repeat"}


# --- the model is clean on the Linux layouts; findings are values ---------------------------

@pytest.mark.parametrize("version", LINUX_VERSIONS)
@pytest.mark.parametrize("indirect", [False, True])
def test_model_clean_on_linux_layouts(version, indirect):
    target = ModelTarget("spec")
    for lay in [linux_tx(version, n, indirect=indirect) for n in (0, 1, 4096, 33 * 1024, 65536)] + [linux_rx(version, indirect=indirect)]:
        answer, findings = evaluate(target, assemble(lay))
        assert answer.ok and findings == []


def test_rust_vmm_shows_only_the_multi_fragment_gap_on_linux_layouts():
    target = ModelTarget("rust-vmm")
    seen = set()
    for version in LINUX_VERSIONS:
        for indirect in (False, True):
            for n in (0, 100, 33 * 1024):
                _, fs = evaluate(target, assemble(linux_tx(version, n, indirect=indirect)))
                seen |= {(f.oracle, "6.17" in f.message) for f in fs}
            _, fs = evaluate(target, assemble(linux_rx(version, indirect=indirect)))
            assert not fs
    assert seen == {("interop.linux-rejected", True), ("differential.model", False)}


def test_finding_to_json_round_trips_through_the_corpus_reader():
    case, bad, _ = _slice_in_region()
    f = replace(check(case, bad)[0], target="py:vsock_fuzz.zoo.region_end:parse")
    obj = json.loads(json.dumps(f.to_json()))
    assert obj["oracle"] == "safety.slice-in-region" and obj["severity"] == "critical"
    assert case_from_json(obj).case == case
    assert bytes.fromhex(obj["binary"]) == encode(case)
    assert obj["reproduce"].startswith("vsock-fuzz replay --target py:vsock_fuzz.zoo.region_end:parse ")
    assert obj["reproduce"].endswith(f"{f.file_stem()}.bin") and f.file_stem().startswith("safety.slice-in-region-")
    assert f.key() == "safety.slice-in-region:tx:header_slices" == obj["key"]


def test_keys_group_the_same_bug_and_split_different_ones():
    case, bad, _ = _slice_in_region()
    other = assemble(Layout("tx", (Buf(HEADER_SIZE, addr=R0.end - 20), Buf(10)), header=Header(len=10), regions=(R0, R1)))
    bad2 = with_(model(other), header_slices=((R0.end - 20, HEADER_SIZE),))
    assert check(case, bad)[0].key() == check(other, bad2)[0].key()
    data_bad = with_(model(case), data_slices=((0x200000, 10),))
    assert check(case, data_bad)[0].key() != check(case, bad)[0].key()


def test_worst_and_severity_order():
    assert SEVERITY_ORDER == {"warning": 0, "error": 1, "critical": 2}
    case, bad, _ = _slice_in_region()
    assert worst(check(case, bad)) == "critical"
    assert worst([]) is None


def test_evaluate_runs_twice_and_names_the_target():
    calls = []

    def flaky(case):
        calls.append(case)
        return parse(case) if len(calls) % 2 else Answer.reject("Busy", "queue")

    answer, fs = evaluate(PythonTarget(flaky, "py:tests:flaky"), tx(10))
    assert len(calls) == 2 and answer.ok
    assert {f.oracle for f in fs} == {"determinism.repeat"}
    assert fs[0].target == "py:tests:flaky"
    _, fs = evaluate(PythonTarget(flaky, "py:tests:flaky"), tx(10), determinism=False)
    assert fs == []


def test_the_same_answer_to_the_same_case_is_judged_once_and_asked_again(monkeypatch):
    """oracles.run keeps a target's findings for a (case, answer) it judged: the oracles run once,
    the findings are the same values (stamped, each call's own list), and determinism still asks
    the target again and judges the second answer afresh."""
    from vsock_fuzz.oracles import run
    case, asked, checked = tx(10), [], []
    real = run.check
    monkeypatch.setattr(run, "check", lambda *a, **k: checked.append(a[0]) or real(*a, **k))

    def rejecting(c):  # a Linux layout refused: its content probe is asked once, then kept
        asked.extend([c] if c == case else [])
        return Answer.reject("Busy", "queue") if len(asked) == 4 else Answer.reject("NoRoom", "queue")

    target = PythonTarget(rejecting, "py:tests:rejecting")
    _, first = evaluate(target, case)
    first.append("a caller's own")
    _, second = evaluate(target, case)
    assert checked == [case] and len(asked) == 4  # judged once, each answer asked again
    assert [f.oracle for f in second] == ["differential.model", "determinism.repeat"]
    assert first[:-1] == second[:1] and second[0].target == "py:tests:rejecting"
    _, other = evaluate(PythonTarget(rejecting, "py:tests:other"), case)
    assert checked == [case, case]  # another target is judged afresh
    assert other[0].target == "py:tests:other"


def test_evaluate_asks_the_reference_once_and_the_model_keeps_no_state(monkeypatch):
    # evaluate skips the determinism repeat for the reference: it relies on parse being pure.
    calls = []
    real = ModelTarget.parse
    monkeypatch.setattr(ModelTarget, "parse", lambda self, case: calls.append(case) or real(self, case))
    evaluate(ModelTarget(), tx(10))
    assert len(calls) == 1
    # Pure: each corpus case answered the same, fresh or after every other case (either profile).
    files = sorted(p for d in ("target", "rx", "tx") for p in (ROOT / "corpus" / d).iterdir())
    for profile in PROFILES:
        first = [parse(decode(p.read_bytes()), profile) for p in files]
        again = [parse(decode(p.read_bytes()), profile) for p in reversed(files)][::-1]
        assert first == again


def test_check_is_deterministic_whatever_was_checked_before():
    """The same case and answer give the same findings after other cases were checked
    (the shared chain walk is cached per case and must not leak between cases)."""
    case, bad, _ = _slice_in_region()
    first = check(case, bad)
    assert first  # the answer breaks a rule: there is something to compare
    for make in CASES.values():
        other, other_bad, _ = make()
        check(other, other_bad)
    assert check(case, bad) == first


def test_every_finding_message_names_no_internal_names():
    """Messages speak spec and memory, not our code: no Python reprs of our types."""
    for name, make in CASES.items():
        case, bad, _ = make()
        for f in check(case, bad):
            assert "Descriptor(" not in f.message and "_Context" not in f.message, f.message


# --- check never breaks on what a target may say -----------------------------------------

from hypothesis import given, strategies as st  # noqa: E402

from vsock_fuzz.engines.strategies import cases  # noqa: E402
from vsock_fuzz.case.binary import encode

_slices = st.lists(st.tuples(st.one_of(st.integers(0, 0x4000), st.integers(0, 1 << 70)),
                             st.one_of(st.integers(0, 128), st.integers(0, 1 << 40))), max_size=5)
_answers = st.one_of(
    st.builds(Answer, st.just(True), st.one_of(st.none(), st.builds(Header, len=st.integers(0, (1 << 32) - 1))),
              _slices.map(tuple), _slices.map(tuple)),
    st.builds(Answer.reject, st.sampled_from(["DescriptorChainTooShort", "Whatever"]), st.just("chain")),
    st.builds(Answer.fault, st.sampled_from(["crash", "hang"]), st.text(max_size=20)))


@given(cases(), _answers, _answers)
def test_check_takes_any_answer_and_is_deterministic(case, answer, repeat):
    """Whatever a target answers, `check` returns findings (never raises), the same twice."""
    first = check(case, answer, model=parse(case), repeat=repeat)
    assert first == check(case, answer, model=parse(case), repeat=repeat)
    for f in first:
        assert f.oracle in ORACLES and f.severity in SEVERITY_ORDER
        json.dumps(f.to_json())


def test_linux_rx_may_offer_less_room_but_not_none():
    """An rx device may write fewer bytes than a Linux buffer holds (smaller packets), in
    order after the header; no room at all breaks the driver."""
    case = assemble(linux_rx("5.x"))
    good = model(case)
    (a, _), = good.data_slices
    assert "interop.linux-slices" not in fired(case, with_(good, data_slices=((a, 1024),)))
    assert "interop.linux-slices" in fired(case, with_(good, data_slices=()))


# --- answers of many slices over many buffers (the oracles' shortcuts for the usual answer) ---

def test_stream_order_and_gap_over_many_buffers():
    """Data over 40 scattered buffers: in order holds; two pieces swapped is out of order;
    a byte skipped in each buffer is a gap, not disorder."""
    bufs = (Buf(HEADER_SIZE),) + tuple(Buf(8, addr=0x8000 + 32 * k) for k in range(40))
    case = assemble(Layout("tx", bufs, header=Header(len=320)))
    good = model(case)
    assert good.ok and len(good.data_slices) == 40 and not check(case, good)
    ds = good.data_slices
    assert "fidelity.stream-order" in fired(case, with_(good, data_slices=ds[:10] + (ds[11], ds[10]) + ds[12:]))
    names = fired(case, with_(good, data_slices=tuple((a + 1, n - 1) for a, n in ds)))
    assert "conformance.stream-gap" in names and "fidelity.stream-order" not in names


def test_slice_overlap_among_many_one_byte_slices():
    """Header and data reported byte by byte: apart they hold; one data byte on the header's
    last byte is the overlap the message names."""
    case = tx(100)
    good = model(case)
    (ha, _), = good.header_slices
    (da, dn), = good.data_slices
    hs = tuple((ha + k, 1) for k in range(HEADER_SIZE))
    ds = tuple((da + k, 1) for k in range(dn))
    assert "fidelity.slice-overlap" not in fired(case, with_(good, header_slices=hs, data_slices=ds))
    bad = with_(good, header_slices=hs, data_slices=ds[:-1] + ((ha + HEADER_SIZE - 1, 1),))
    f = next(f for f in check(case, bad) if f.oracle == "fidelity.slice-overlap")
    assert f"header bytes [{ha:#x}, {HEADER_SIZE}] and data bytes [{ha + HEADER_SIZE - 1:#x}, 1]" in f.message


def test_an_unoffered_indirect_next_buffer_is_a_plain_buffer_whatever_the_chain_length():
    """Firecracker (no VIRTIO_F_INDIRECT_DESC) reads an rx descriptor with INDIRECT|NEXT|WRITE as a
    plain writable buffer followed by the next one, and bounds no chain to 2^32 bytes. The header it
    writes inside that buffer is inside the chain it walked: a leniency (a warning), never
    safety.slice-in-chain, which the table reading of the same descriptor would say."""
    from vsock_fuzz.case.wire import F_INDIRECT
    from vsock_fuzz.model.device import Device
    firecracker = Device.from_json({"features": ["VIRTIO_F_VERSION_1", "VIRTIO_F_IN_ORDER"]}, "test")
    head = 1 << 20
    case = assemble(Layout("rx", (Buf((1 << 32) - 16, F_INDIRECT | F_WRITE, addr=head),
                                  Buf(4096, F_WRITE, addr=(1 << 32) + (1 << 21))), regions=(Region(0, 1 << 33),)))
    answer = Answer(True, None, ((head, HEADER_SIZE),), ((head + HEADER_SIZE, 4096),))
    found = check(case, answer, model=parse(case, "spec", firecracker), device=firecracker)
    assert found and worst(found) == "warning", [(f.oracle, f.message) for f in found]
    assert {f.oracle for f in found} >= {"conformance.malformed-accepted"}


# --- oracles only where the answer differs (oracles/run.py `agrees`) -----------------------------

def _device_shapes():
    """The device the harness assumes, and every correct zoo device's declared offer."""
    import importlib
    from vsock_fuzz.model.device import ASSUMED, Device
    from vsock_fuzz.zoo import CORRECT
    return [ASSUMED] + [Device.from_json(importlib.import_module(module).Device.device, name)
                        for name, module in CORRECT]


DEVICE_SHAPES = _device_shapes()


def _quiet_on_every_reading(case):
    """Each legal reading's answer, judged by every oracle (no skipping), gives no finding."""
    from vsock_fuzz.model.packet import readings
    from vsock_fuzz.oracles.run import agrees
    for device in DEVICE_SHAPES:
        fitted = device.fit(case)
        model = parse(fitted, "spec", device)
        for r in readings(fitted, "spec", device):
            assert agrees(r.answer, r.answer)
            found = check(fitted, r.answer, model=model, device=device, skip=False)
            assert not found, (device.to_json(), r.why, [(f.oracle, f.message) for f in found])


@given(cases())
def test_no_oracle_fires_on_an_answer_a_reading_gives(case):
    """Why `check` may skip an answer that agrees with one of the model's readings (spec profile)."""
    _quiet_on_every_reading(case)


def test_no_oracle_fires_on_a_reading_of_any_corpus_case():
    from vsock_fuzz.case.corpus import iter_cases
    from vsock_fuzz.engines.check import rows
    items = [item for item in iter_cases([str(Path(__file__).parent.parent / "corpus")])
             if not isinstance(item, Exception)]
    assert len(items) > 400
    for item in items:
        _quiet_on_every_reading(item.case)
    for row in rows():
        _quiet_on_every_reading(row.case)


def test_an_agreeing_answer_skips_every_oracle_but_determinism():
    from vsock_fuzz.oracles.run import agrees
    case = assemble(linux_tx("6.2", 64))
    model = parse(case)
    assert agrees(model, model) and check(case, model, model=model) == []
    other = Answer(True, model.header, model.header_slices, model.data_slices[:0])
    assert not agrees(other, model) and check(case, other, model=model)  # a differing answer is judged
    crashed = Answer.fault("crash", "exited with status 101")
    assert not agrees(crashed, Answer.reject("X", "chain")) and check(case, crashed)
    found = check(case, model, model=model, repeat=other)
    assert [f.oracle for f in found] == ["determinism.repeat"]


def test_readings_that_walk_alike_share_the_walk_oracles_findings():
    """check judges an answer under each reading the device's offer allows; the model's and a
    refusal's walk the chain alike and share _ON_WALK's findings. The result is the one of
    judging every reading in full, for the zoo devices' answers on devices without
    INDIRECT_DESC or SEQPACKET, where the readings are several."""
    import importlib
    import random
    from vsock_fuzz.model.device import INDIRECT_DESC, SEQPACKET, Device
    from vsock_fuzz.model.packet import readings
    from vsock_fuzz.oracles.run import _check, _weight, agrees
    from vsock_fuzz.oracles.triage import explained
    from vsock_fuzz.zoo import CORRECT, ZOO

    devices = (Device(features=frozenset(), source="test"), Device(features=frozenset({SEQPACKET}), source="test"),
               Device(features=frozenset({INDIRECT_DESC}), source="test"))
    parsers = [importlib.import_module(m).parse for _, m, *_ in ZOO + CORRECT]
    corpus = [p.read_bytes() for p in sorted((ROOT / "corpus").rglob("*"))
              if p.is_file() and p.suffix not in (".json", ".dict", ".md")]
    rnd = random.Random(7)
    inputs = list(corpus)
    for _ in range(1500):
        data = bytearray(rnd.choice(corpus))
        for _ in range(rnd.randrange(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        inputs.append(bytes(data))
    shared = 0
    for data in inputs:
        case = decode(data)
        for device in devices:
            alternatives = readings(case, "spec", device)
            if len(alternatives) < 2:
                continue
            model = alternatives[0].answer
            for parse_fn in parsers:
                try:
                    answer = parse_fn(case)
                except Exception:  # a zoo device's planted crash
                    continue
                if not answer.ok or any(agrees(answer, r.answer) for r in alternatives):
                    continue
                full = [_check(case, answer, r.answer if i else model, None, "spec", False, device, r)
                        for i, r in enumerate(alternatives)]
                assert check(case, answer, model=model, device=device) == explained(min(full, key=_weight)), data.hex()
                shared += sum(a.walked is b.walked for a in alternatives for b in alternatives if a is not b) > 0
    assert shared > 50


def test_buffers_overlap_is_any_two_buffers_sharing_a_byte():
    """_Chain.buffers_overlap (the union's size against the bytes the buffers hold) says whether
    two used buffers share a byte, as comparing every pair does: duplicates, touching and
    nested buffers, zero-length ones left out."""
    import random
    from vsock_fuzz.model.chain import walked
    from vsock_fuzz.oracles.context import _Chain

    rnd = random.Random(3)
    seen = {True: 0, False: 0}
    for _ in range(400):
        bufs = tuple(Buf(rnd.choice((0, 1, 4, 16, 44, 64)), addr=0x10000 + 16 * rnd.randrange(24))
                     for _ in range(rnd.randrange(1, 7)))
        chain = _Chain(walked(assemble(Layout("tx", bufs))))
        pairs = [(a, b) for i, a in enumerate(chain.used) for b in chain.used[i + 1:]]
        want = any(a.addr < b.addr + b.len and b.addr < a.addr + a.len for a, b in pairs)
        assert chain.buffers_overlap == want, bufs
        seen[want] += 1
    assert min(seen.values()) > 50
