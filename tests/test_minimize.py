"""The shared shrinker: smaller cases that still fail, valid at every step, within the budget."""

import os
from dataclasses import replace

from vsock_fuzz.case.binary import decode, encode
from vsock_fuzz.case.value import Case
from vsock_fuzz.case.wire import F_NEXT
from vsock_fuzz.cli import main
from vsock_fuzz.case.corpus import read_case, write_case
from vsock_fuzz.case.wire import Header
from vsock_fuzz.case.layout import Buf, Layout, assemble, linux_tx
from vsock_fuzz.engines.minimize import fires, shrink
from vsock_fuzz.oracles import evaluate
from vsock_fuzz.model.packet import parse
from vsock_fuzz.cli.render import render
from vsock_fuzz.targets import open_target

BIG = assemble(linux_tx("6.17", 40000, header=Header(src_port=77, dst_port=99, fwd_cnt=12345)))


def profiles_disagree(case: Case) -> bool:
    # The spec profile takes a multi-fragment packet that the rust-vmm profile refuses.
    return parse(case, "spec").ok and not parse(case, "rust-vmm").ok


def test_shrinks_while_the_predicate_holds():
    assert profiles_disagree(BIG)
    small = shrink(BIG, profiles_disagree)
    assert profiles_disagree(small)
    assert len(encode(small)) < len(encode(BIG))
    assert small.regions[0].size < BIG.regions[0].size
    # header fields no rule needs are zeroed; the descriptors' addresses are kept
    assert b"\x39\x30" not in b"".join(w.data for w in small.writes)  # fwd_cnt 12345
    assert "addr 0x0 " not in render(small)


def test_ring_and_max_data_size_are_kept():
    small = shrink(BIG, profiles_disagree)
    assert small.ring == BIG.ring and small.max_data_size == BIG.max_data_size


def test_every_candidate_is_a_valid_case_in_both_encodings():
    seen = []

    def check(case):
        # writes inside memory, regions sane: what a parse request may hold
        assert Case.from_request(case.to_request()) == case
        assert decode(encode(case)) == case
        seen.append(case)
        return profiles_disagree(case)
    shrink(BIG, check, budget=300)
    assert len(seen) > 50


def test_budget_bounds_the_calls():
    calls = []
    assert shrink(BIG, lambda c: calls.append(c) and False, budget=25) == BIG
    assert len(calls) == 25


def test_nothing_smaller_fails_gives_the_case_back():
    assert shrink(BIG, lambda c: c == BIG) == BIG


def test_drops_what_the_failure_does_not_need():
    # A payload write that no rule looks at goes; the chain that breaks stays.
    lay = Layout("tx", (Buf(44, next=1), Buf(5, F_NEXT, next=0)), header=Header(len=5), extra=((0x9000, b"junk" * 20),))
    case = assemble(lay)
    looped = lambda c: parse(c).error == "ChainTooLong"  # noqa: E731
    assert looped(case)
    small = shrink(case, looped)
    assert looped(small)
    assert not any(w.gpa == 0x9000 for w in small.writes)


def test_fires_uses_the_same_oracle():
    target = open_target("reference:rust-vmm")
    _, findings = evaluate(target, BIG)
    names = {f.oracle for f in findings}
    assert "interop.linux-rejected" in names
    pred = fires(target, "interop.linux-rejected")
    assert pred(BIG)
    assert not pred(assemble(linux_tx("5.x", 5)))  # a layout rust-vmm takes


def test_minimize_command_writes_both_encodings(tmp_path, capsys):
    src = str(tmp_path / "big.bin")
    write_case(src, BIG)
    out = tmp_path / "out"
    rc = main(["minimize", src, "--target", "reference:rust-vmm", "--oracle", "interop.linux-rejected",
               "--out", str(out), "--budget", "400"])
    text = capsys.readouterr().out
    assert rc == 0 and "still fires" in text and "walk from head" in text
    names = sorted(os.listdir(out))
    assert len(names) == 3 and names[0].startswith("interop.linux-rejected-")
    stem = os.path.join(out, names[0][:-len(".bin")])
    small = read_case(stem + ".bin").case
    assert read_case(stem + ".json").case == small
    assert len(encode(small)) < len(encode(BIG))
    target = open_target("reference:rust-vmm")
    assert fires(target, "interop.linux-rejected")(small)


def test_minimize_command_refuses_an_oracle_that_does_not_fire(tmp_path, capsys):
    src = str(tmp_path / "ok.json")
    write_case(src, assemble(linux_tx("5.x", 5)))
    assert main(["minimize", src, "--target", "reference"]) == 2
    assert "nothing to minimize" in capsys.readouterr().err
    assert main(["minimize", src, "--target", "reference", "--oracle", "safety.crash"]) == 2
    assert "does not fire" in capsys.readouterr().err


def test_minimize_says_why_determinism_cannot_fire_on_the_reference(tmp_path, capsys):
    src = str(tmp_path / "ok.json")
    write_case(src, assemble(linux_tx("5.x", 5)))
    assert main(["minimize", src, "--target", "reference", "--oracle", "determinism.repeat"]) == 2
    err = capsys.readouterr().err
    assert "does not fire" in err and "asked once per case" in err
    # Any other target is asked twice: no such explanation.
    assert main(["minimize", src, "--target", "py:vsock_fuzz.zoo.two_desc:parse", "--oracle", "determinism.repeat"]) == 2
    assert "asked once" not in capsys.readouterr().err


def _reads_past_its_data(case):
    """A device that reads 8 bytes past the packet's last data buffer (hdr.len trusted)."""
    answer = parse(case)
    if answer.ok and answer.data_slices:
        gpa, n = answer.data_slices[-1]
        return replace(answer, data_slices=answer.data_slices[:-1] + ((gpa, n + 8),))
    return answer


def test_a_root_cause_keeps_its_key_while_it_shrinks():
    # In the middle of memory the over-read is outside the chain only (a root cause); at the
    # region's end it also leaves the region, which then explains it (a consequence). The
    # campaign shrinks a root cause's reproducer with its key, so it cannot end up as the other.
    from vsock_fuzz.targets import PythonTarget
    target = PythonTarget(_reads_past_its_data, "over-read")
    middle = assemble(Layout("tx", (Buf(44), Buf(64)), header=Header(len=64)))
    end = assemble(Layout("tx", (Buf(44), Buf(64, addr=(1 << 20) - 64)), header=Header(len=64)))
    _, found = evaluate(target, middle)
    (root,) = [f for f in found if f.oracle == "safety.slice-in-chain"]
    assert not root.cause
    _, found = evaluate(target, end)
    (there,) = [f for f in found if f.oracle == "safety.slice-in-chain"]
    assert there.cause and there.key() != root.key()  # a consequence there
    assert fires(target, "safety.slice-in-chain")(end)
    assert not fires(target, "safety.slice-in-chain", key=root.key())(end)
    assert fires(target, "safety.slice-in-chain", key=root.key())(middle)
