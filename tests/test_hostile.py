"""Hostile targets: real programs (tests/hostile/hostile.py) that crash, hang,
print garbage, fork and flood; the harness reports the case in flight,
restarts the target, goes on, and leaves no process behind."""

import os
import random
import signal
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from vsock_fuzz.case.value import Region
from vsock_fuzz.case.wire import Header
from vsock_fuzz.case.layout import Buf, Layout, assemble, linux_tx
from vsock_fuzz.model.packet import parse
from vsock_fuzz.targets import CommandTarget, TargetError, open_target
from vsock_fuzz.targets.process import STDERR_KEEP

HOSTILE = Path(__file__).parent / "hostile" / "hostile.py"
GOOD = assemble(linux_tx("6.2", 5))
BAD = GOOD._replace(max_data_size=666)  # the trigger: hostile.py misbehaves on it


def hostile(behaviour: str, *args, **kw) -> CommandTarget:
    kw.setdefault("timeout", 0.5)
    kw.setdefault("start_timeout", 5.0)
    return CommandTarget([sys.executable, str(HOSTILE), behaviour, *map(str, args)], **kw)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`, after giving SIGKILL up to 2 s to land."""
    deadline = time.monotonic() + 2.0
    while (members := _group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return members


def _group_members(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                out.append(int(d.name))
    return out


def our_children() -> list[str]:
    """Child processes of this test process, zombies included, as 'pid state'."""
    me = str(os.getpid())
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                out.append(f"{d.name} {fields[0]}")
    return out


def run_good_bad_good(t: CommandTarget):
    """Three cases; the middle one misbehaves. Returns the answers and the pids that served them."""
    first = t.parse(GOOD)
    pgid = t.proc.pid
    bad = t.parse(BAD)
    after = t.parse(GOOD)
    assert first.error == "NotChecked" and not first.faulted
    assert after.error == "NotChecked" and not after.faulted, "the campaign goes on after a restart"
    assert t.restarts == 1 and t.failures == 0
    t.close()
    assert group_members(pgid) == [], "the whole process group is gone"
    assert our_children() == [], "no child process or zombie left"
    return bad


@pytest.mark.parametrize("behaviour, kind, words", [
    ("exit", "crash", ["exited with status 7", "giving up on this packet"]),
    ("abort", "crash", ["killed by SIGABRT"]),
    ("segv", "crash", ["killed by SIGSEGV"]),
    ("panic", "crash", ["exited with status 101", "panicked at src/packet.rs:212:31", "out of range"]),
    ("hang", "hang", ["no answer within 0.5s"]),
    ("silent", "hang", ["no answer within 0.5s"]),
    ("garbage", "crash", ["not JSON", "not json {{{"]),
    ("partial", "hang", ["no answer within 0.5s"]),
    ("wrong-id", "crash", ["answered id 1002 to request 2"]),
    ("close-stdout", "crash", ["closed its stdout but is still running"]),
])
def test_misbehaving_case_is_reported_and_campaign_goes_on(behaviour, kind, words):
    bad = run_good_bad_good(hostile(behaviour))
    assert bad.faulted and bad.error_class == kind, bad
    for w in words:
        assert w in bad.detail, (w, bad.detail)


def test_line_of_megabytes_is_garbage_not_a_memory_blowup():
    t = hostile("huge", 20, timeout=5.0)  # 20 MiB: over the 16 MiB line limit
    bad = run_good_bad_good(t)
    assert bad.error_class == "crash" and "printed a line longer than" in bad.detail


def test_megabyte_line_under_the_limit_is_not_json():
    bad = run_good_bad_good(hostile("huge", 2, timeout=5.0))
    assert bad.error_class == "crash" and "not JSON" in bad.detail


def test_fork_child_holding_the_pipes_is_killed_and_exit_seen_at_once():
    t = hostile("fork", timeout=5.0)
    t.parse(GOOD)
    pgid = t.proc.pid
    start = time.monotonic()
    bad = t.parse(BAD)
    # The exit is seen through the pidfd, not after the 5 s case timeout.
    assert time.monotonic() - start < 4.0
    assert bad.error_class == "crash" and "exited with status 5" in bad.detail, bad.detail
    assert group_members(pgid) == [], "the forked child holding the pipes was killed with its group"
    assert t.parse(GOOD).error == "NotChecked"
    t.close()
    assert our_children() == []


def test_flooding_stderr_does_not_block_and_is_kept_bounded():
    t = hostile("flood-stderr", 2)  # 2 MiB of stderr before every answer
    answers = t.parse_many([GOOD] * 4)
    assert [a.error for a in answers] == ["NotChecked"] * 4
    assert t.restarts == 0
    time.sleep(0.05)
    tail = t.stderr_tail()
    assert 0 < len(tail) <= STDERR_KEEP and set(tail) == {"E"}
    t.close()


def test_dies_at_start_is_a_clear_target_error():
    t = hostile("die-at-start")
    with pytest.raises(TargetError) as e:
        t.parse(GOOD)
    msg = str(e.value)
    assert "hello failed" in msg and "exited with status 3" in msg and "/dev/vhost-vsock" in msg
    assert our_children() == []


def test_a_target_that_prints_nothing_at_all_is_a_clear_error():
    t = hostile("mute", start_timeout=0.3)
    with pytest.raises(TargetError, match=r"hello failed: no answer to hello within the start timeout"):
        t.parse(GOOD)
    assert our_children() == []


def test_slow_start_within_the_start_timeout_is_fine():
    t = hostile("slow-start", 0.5, start_timeout=5.0)
    assert t.parse(GOOD).error == "NotChecked"
    t.close()


def test_slow_start_beyond_the_start_timeout_is_a_clear_error():
    t = hostile("slow-start", 5, start_timeout=0.3)
    with pytest.raises(TargetError, match=r"no answer to hello within the start timeout \(0.3s\)"):
        t.parse(GOOD)
    assert our_children() == []


def test_restart_cap_ends_the_campaign_with_a_clear_message():
    t = hostile("always-exit", max_restarts=3)
    faults = [t.parse(GOOD) for _ in range(3)]
    assert all(a.error_class == "crash" and "exited with status 9" in a.detail for a in faults)
    with pytest.raises(TargetError, match="restarted 3 times in a row without answering a case; "
                                          "giving up: exited with status 9"):
        t.parse(GOOD)
    assert our_children() == []


def test_an_answered_case_resets_the_restart_count():
    t = hostile("exit", max_restarts=2)
    for _ in range(4):  # 4 crashes in all, never 2 in a row
        assert t.parse(BAD).faulted
        assert not t.parse(GOOD).faulted
    assert t.restarts == 4
    t.close()


def test_a_run_of_crashing_cases_does_not_end_a_target_that_answers_a_linux_packet():
    # libFuzzer tries several neighbours of one crashing input in a row: at the cap the
    # target is probed with a Linux packet, and goes on as it answers it.
    t = hostile("exit", max_restarts=2)
    for _ in range(5):  # five crashes in a row, a cap of two
        assert t.parse(BAD).faulted
    assert not t.parse(GOOD).faulted and t.failures == 0
    assert t.restarts >= 5
    t.close()
    assert our_children() == []


def test_failing_restarts_back_off_then_give_up(tmp_path):
    flag = tmp_path / "crashed-once"
    t = hostile("fail-restart", flag, max_restarts=4)
    assert not t.parse(GOOD).faulted
    assert t.parse(BAD).faulted  # leaves the flag: every restart now dies at start
    start = time.monotonic()
    with pytest.raises(TargetError) as e:
        t.parse(GOOD)
    assert "restarted 4 times in a row" in str(e.value)
    assert "restart failed" in str(e.value) and "exited with status 3" in str(e.value)
    assert time.monotonic() - start >= 0.01 + 0.02  # back-off slept between failed restarts
    assert our_children() == []


def test_parse_many_reports_the_case_in_flight_and_resends_the_rest():
    t = hostile("exit")
    answers = t.parse_many([GOOD, GOOD, BAD, GOOD, BAD, GOOD])
    assert [a.error for a in answers] == ["NotChecked", "NotChecked", "TargetCrashed",
                                          "NotChecked", "TargetCrashed", "NotChecked"]
    assert t.restarts == 2
    t.close()


def test_rlimit_as_stops_a_memory_eater():
    t = hostile("eat-memory", rlimit_as=192 << 20)
    bad = t.parse(BAD)
    assert bad.error_class == "crash" and "MemoryError" in bad.detail, bad.detail
    assert t.parse(GOOD).error == "NotChecked"
    t.close()
    # Without the limit the same target survives (the limit did it).
    t = hostile("eat-memory", timeout=5.0)
    assert t.parse(BAD).error == "NotChecked"
    t.close()


def test_rlimit_cpu_kills_a_spinning_target():
    t = hostile("burn-cpu", rlimit_cpu=1, timeout=10.0)
    bad = t.parse(BAD)
    assert bad.error_class == "crash" and "killed by SIGXCPU" in bad.detail, bad.detail
    t.close()


def test_open_target_passes_the_hardening_options():
    t = open_target(f"cmd:{sys.executable} {HOSTILE} exit", timeout=0.7, max_restarts=5,
                    rlimit_as=1 << 30, rlimit_cpu=60, start_timeout=3.0, modes=())
    assert (t.timeout, t.max_restarts, t.start_timeout, t.modes) == (0.7, 5, 3.0, ())
    assert dict(t.rlimits) == {"RLIMIT_AS": 1 << 30, "RLIMIT_CPU": 60}


def test_close_leaves_no_process_even_when_the_target_ignores_stdin_eof():
    t = hostile("hang")
    t.parse(GOOD)
    pid = t.proc.pid
    os.kill(pid, signal.SIGSTOP)  # cannot even see its stdin close
    t.close()
    assert group_members(pid) == [] and our_children() == []


def flaky_campaign(n: int, seed: int = 3):
    """n cases, 1% of them crash the flaky target and 0.1% hang it (chosen by max_data_size)."""
    rnd = random.Random(seed)
    crash, hang = GOOD._replace(max_data_size=1000001), GOOD._replace(max_data_size=1000002)
    return [crash if r < 0.01 else hang if r < 0.011 else GOOD for r in (rnd.random() for _ in range(n))]


def test_campaign_against_a_flaky_target_reports_every_crash_and_hang():
    cases = flaky_campaign(3000)
    t = hostile("flaky", timeout=0.2)
    answers = []
    for i in range(0, len(cases), 100):  # as the fuzz loop does: batches, and single cases
        answers += t.parse_many(cases[i:i + 80]) + [t.parse(c) for c in cases[i + 80:i + 100]]
    expected = [{1000001: "crash", 1000002: "hang"}.get(c.max_data_size, "unknown") for c in cases]
    assert [a.error_class for a in answers] == expected
    assert expected.count("crash") >= 20 and expected.count("hang") >= 1
    assert t.restarts == expected.count("crash") + expected.count("hang")
    t.close()
    assert our_children() == []


def test_a_region_of_2_40_bytes_costs_no_memory():
    big = assemble(Layout("tx", (Buf(44), Buf(40000)), regions=(Region(0, 1 << 40), Region(1 << 41, 1 << 40)),
                          header=Header(len=40000)))
    tracemalloc.start()
    answer = parse(big)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert answer.ok and peak < 1 << 20, peak
    # and through a target process: serve over frames-v1, whose RSS stays small
    t = CommandTarget([sys.executable, "-m", "vsock_fuzz", "serve"], timeout=5.0)
    assert t.parse_many([big] * 20) == [answer] * 20
    assert rss_kib(t.proc.pid) < 200 << 10
    t.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


PARENT = """
import sys
from vsock_fuzz.targets import CommandTarget
from vsock_fuzz.case.layout import assemble, linux_tx
good = assemble(linux_tx("6.2", 5))
t = CommandTarget([sys.executable, {hostile!r}, "hang"], timeout=60, die_with_parent={die!r})
t.parse(good)
print(t.proc.pid, flush=True)
t.parse(good._replace(max_data_size=666))  # the target stops reading: this waits 60 s
"""


def test_the_death_signal_costs_no_fork_where_setpriv_works():
    # A fork with a Python preexec_fn cost 4-20 ms per start in a fuzz worker, paid on every
    # crash; setpriv asks for the signal after a vfork (the test below checks it still works).
    from vsock_fuzz.targets.process import setpriv_prefix
    t = CommandTarget([sys.executable, "-m", "vsock_fuzz", "serve"], timeout=5.0, die_with_parent=True)
    assert t.parse(assemble(linux_tx("6.2", 5))).ok
    assert (t._child._prctl is None) == (setpriv_prefix() is not None)
    assert "setpriv" not in Path(f"/proc/{t.proc.pid}/cmdline").read_text()  # it exec'd the target
    t.close()
    # a program that cannot be found is named as before
    with pytest.raises(TargetError, match="cannot start '/nonexistent/target'"):
        CommandTarget(["/nonexistent/target"], die_with_parent=True).parse(assemble(linux_tx("6.2", 5)))


@pytest.mark.parametrize("die", [True, False])
def test_a_killed_parent_takes_its_hung_target_with_it_when_asked(die):
    # What a fuzz worker SIGKILLed after its grace period needs: the hung target never sees
    # its stdin close, so only the kernel (PR_SET_PDEATHSIG) can end it with the worker.
    import subprocess
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(hostile=str(HOSTILE), die=die)],
                              stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    time.sleep(0.3)  # the trigger case is in flight
    parent.kill()
    parent.wait()
    try:
        assert (group_members(pid) == []) == die
    finally:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
