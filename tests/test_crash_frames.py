"""Crash frames (docs/protocol-extensions.md): a Rust kit target whose device panics answers
the case with a crash frame and goes on in a forked child, instead of dying and being
started again.

The target is the kit's example device built to panic on an unmapped available ring
(`make adapters`: adapters/rust/target/avail-panic), as libkrun did. tests/test_rust_adapters.py
fails when cargo is missing; this module builds through the same fixture.
"""

import os
import struct

import pytest

from vsock_fuzz.case.layout import assemble, linux_tx
from vsock_fuzz.engines.worker import with_backtrace
from vsock_fuzz.oracles import evaluate
from vsock_fuzz.targets import CommandTarget
from vsock_fuzz.targets.frames import FrameError, decode_answer

from test_rust_adapters import WORKSPACE, built  # noqa: F401  (the fixture)

TWIN = WORKSPACE / "target" / "avail-panic" / "release" / "vsock-target-example"
# The kit's example device that panics or aborts on request (`cargo test` builds it).
CRASHING = WORKSPACE / "target" / "release" / "examples" / "crashing_device"
TITLE = "panicked at example-device/src/main.rs:"


def good(length: int = 16):
    return assemble(linux_tx("5.x", length))


def unmapped_avail(length: int = 16):
    case = good(length)
    return case._replace(ring=case.ring._replace(avail=1 << 40))


@pytest.fixture
def twin(built):  # noqa: F811
    assert TWIN.exists(), "`make adapters` builds the panicking twin"
    targets = []

    def open_twin(**kw) -> CommandTarget:
        t = CommandTarget([str(TWIN)], env={"RUST_BACKTRACE": "0"}, **kw)
        targets.append(t)
        return t
    yield open_twin
    for t in targets:
        t.close()


def test_a_panic_is_answered_in_a_crash_frame_without_a_restart_and_the_answers_around_it_stand(twin):
    cases = [good(1), unmapped_avail(), good(2), good(3), unmapped_avail(), good(4)]
    framed, restarted = twin(), twin(crash_frames=False)
    got, want = framed.parse_many(cases), restarted.parse_many(cases)
    assert framed.hello.get("crash_frames") is True and "crash_frames" not in restarted.hello
    assert [a.error_class for a in got] == [None, "crash", None, None, "crash", None]
    assert framed.restarts == 0 and restarted.restarts == 2
    # The same answers, crashes included: the same title, from the same panic report.
    assert [a for a in got if not a.faulted] == [a for a in want if not a.faulted]
    assert [a.title for a in got] == [a.title for a in want]
    assert got[1].title.startswith(TITLE) and "available ring at 0xN is not in guest memory" in got[1].title
    assert "crash frame" in got[1].detail and "panicked at" in got[1].detail


def test_a_panic_is_a_crash_frame_and_an_abort_still_ends_the_process(built):  # noqa: F811
    target = CommandTarget([str(CRASHING)], env={"RUST_BACKTRACE": "0"})
    try:
        # max_data_size 1: the device panics; 2: it aborts, which no frame can answer. The abort
        # is asked alone: answers still buffered in the process are lost with it (a panic's
        # crash frame flushes them), and a pipelined case before it would be blamed.
        answers = [*target.parse_many([good()._replace(max_data_size=n) for n in (100, 1, 100)]),
                   target.parse(good()._replace(max_data_size=2)),
                   *target.parse_many([good()._replace(max_data_size=n) for n in (100, 1)])]
        assert [a.error_class for a in answers][1::2] == ["crash", "crash", "crash"]
        # The case after each crash is the first its process sees: no state of the crashed one.
        assert [(a.error, a.detail) for a in answers][::2] == [("Refused", "case 1 of this process")] * 3
        assert answers[1].title == answers[5].title and answers[1].title.endswith(": asked to panic")
        assert "SIGABRT" in answers[3].detail
        assert target.restarts == 1  # after the abort only; the new process takes crash frames again
        assert target.hello.get("crash_frames") is True
    finally:
        target.close()


def test_crash_frames_in_a_row_end_the_process_and_its_restart_asks_the_canary(built):  # noqa: F811
    """As --max-restarts dying crashes in a row do (RestartPolicy), so that a device that crashes
    on every case, the canary too, is given up, though its crash frames keep it alive."""
    target = CommandTarget([str(CRASHING)], env={"RUST_BACKTRACE": "0"}, max_restarts=3)
    try:
        answers = [target.parse(good()._replace(max_data_size=n)) for n in (1, 1, 1, 100)]
        assert [a.error_class for a in answers[:3]] == ["crash"] * 3
        assert target.restarts == 1
        assert answers[3].detail == "case 2 of this process"  # the canary was its first
    finally:
        target.close()


def test_many_crashes_pipelined_leave_no_process_or_descriptor_behind_and_end_cleanly(twin):
    """Cases of several KiB pipelined around crashes (a request may be split between what the
    crashed child read and what is still in the pipe): the answers of a restarted twin, as
    many children alive as before, as many open descriptors, and exit status 0 at the end."""
    sizes = [k * 37 % 4000 + 1 for k in range(1, 200, 7)]
    cases = [unmapped_avail(n) if n % 3 == 0 else good(n) for n in sizes]
    framed, restarted = twin(), twin(crash_frames=False)
    framed.parse(good())
    pid = framed.proc.pid
    fds, children = len(os.listdir(f"/proc/{pid}/fd")), _children(pid)
    got, want = framed.parse_many(cases * 3), restarted.parse_many(cases * 3)
    assert sum(a.faulted for a in got) == 3 * sum(c.ring.avail == 1 << 40 for c in cases) > 20
    assert framed.restarts == 0 and restarted.restarts > 20
    seen = [(a.ok, a.error, a.header, a.header_slices, a.data_slices, a.title) for a in got]
    assert seen == [(a.ok, a.error, a.header, a.header_slices, a.data_slices, a.title) for a in want]
    assert len(os.listdir(f"/proc/{pid}/fd")) == fds and len(_children(pid)) == len(children) == 1
    proc = framed.proc
    framed.close()
    assert proc.returncode == 0


def _children(pid: int) -> list[str]:
    return open(f"/proc/{pid}/task/{pid}/children").read().split()


def test_a_crash_is_judged_as_before(twin):
    answer, findings = evaluate(twin(), unmapped_avail())
    assert answer.faulted
    assert [f.oracle for f in findings] == ["safety.crash"]
    assert findings[0].signature.startswith(TITLE)


def test_a_crash_run_again_with_backtraces_keeps_its_backtrace_and_the_process_after_it_has_none(twin):
    target = twin()
    finding = evaluate(target, unmapped_avail())[1][0]
    again = with_backtrace(target, finding)
    assert "stack backtrace:" in again.message and TITLE in again.message
    # The frames from the device's down, as std's hook prints them: not the hook's own.
    trace = again.message.split("stack backtrace:\n", 1)[1]
    assert trace.splitlines()[0].endswith("rust_begin_unwind") and "install_hook" not in trace
    assert "Device>::parse" in trace and "vsock_target_example::main" in trace and "lang_start" not in trace
    # restart_with's process served that case alone: the next crash prints no backtrace
    # (a symbolized one costs 100-300 ms, which every crash after it would pay).
    after = target.parse(unmapped_avail(8))
    assert after.faulted and "stack backtrace" not in after.detail


def test_a_crash_frame_is_garbage_unless_hello_settled_them():
    frame = struct.pack("<IB", 7, 2) + b"thread 'main' panicked at src/lib.rs:3:5:\nboom\n"
    with pytest.raises(FrameError, match="not settled"):
        decode_answer(frame)
    rid, answer = decode_answer(frame, crashes=True)
    assert rid == 7 and answer.error_class == "crash" and answer.title == "panicked at src/lib.rs:3:5: boom"
