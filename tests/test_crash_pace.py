"""Crash-prone devices keep their pace: a restart whose hello answers costs no back-off, a warm
standby makes a restart one exchange, crashing inputs stay out of libFuzzer's corpus, and a
target that cannot start still ends the campaign (exit 2) after the cap."""

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from pathlib import Path

import pytest

from vsock_fuzz.targets import command
from vsock_fuzz.targets import CommandTarget, TargetError
from test_hostile import BAD, GOOD, hostile, our_children

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sleeps(monkeypatch):
    """The back-off's sleeps (command.py's only use of time), recorded instead of slept."""
    slept = []
    monkeypatch.setattr(command, "time", SimpleNamespace(sleep=slept.append))
    return slept


def test_a_run_of_crashes_whose_restarts_answer_hello_costs_no_backoff(sleeps):
    t = hostile("exit", max_restarts=0)
    for _ in range(6):  # six crashes in a row: every restart answers hello at once
        assert t.parse(BAD).faulted
    assert sleeps == []
    assert not t.parse(GOOD).faulted and t.restarts == 6
    t.close()
    assert our_children() == []


def test_a_restart_takes_the_warm_standby(sleeps):
    t = hostile("exit")
    assert t.parse(BAD).faulted and not t.parse(GOOD).faulted  # the first restart starts the spare
    spare = t._spare[0].popen.pid
    assert t.parse(BAD).faulted and not t.parse(GOOD).faulted
    assert t.proc.pid == spare, "the second restart ran the process started ahead"
    assert t._spare is not None and t._spare[0].popen.pid != spare, "and started the next spare"
    t.close()
    assert our_children() == [], "close kills the spare too"
    u = hostile("exit", standby=False)
    assert u.parse(BAD).faulted and not u.parse(GOOD).faulted and u._spare is None
    u.close()


def test_a_spare_that_cannot_start_beside_the_running_target_is_given_up(tmp_path, sleeps):
    # One instance at a time (a lock, as a device holding /dev/vhost-vsock or a CID would):
    # the spare dies at start, so restarts go on without one, at full pace and answered.
    script = tmp_path / "exclusive.py"
    script.write_text(textwrap.dedent(f"""
        import fcntl, json, os, sys
        lock = open({str(tmp_path / 'lock')!r}, "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            sys.exit(3)
        for line in sys.stdin:
            req = json.loads(line)
            if req.get("op") == "hello":
                print(json.dumps({{"ok": True, "protocol": 1}}), flush=True)
            elif req.get("max_data_size") == 666:
                os._exit(7)
            else:
                print(json.dumps({{"id": req["id"], "ok": False, "error": "NotChecked"}}), flush=True)
    """))
    t = CommandTarget([sys.executable, str(script)], max_restarts=2, timeout=2.0, modes=())
    assert t.parse(BAD).faulted and t.parse(GOOD).error == "NotChecked"
    assert t._spare[0].popen.wait(timeout=10) == 3, "the spare found the lock taken"
    for _ in range(3):
        assert t.parse(BAD).faulted
        assert t.parse(GOOD).error == "NotChecked"
    assert t.standby is False and t._spare is None and t.restarts == 4
    assert sleeps == [], "a spare that failed is not a failed restart"
    t.close()
    assert our_children() == []


def test_failed_restarts_still_back_off_and_hit_the_cap(tmp_path, sleeps):
    t = hostile("fail-restart", tmp_path / "flag", max_restarts=4)
    assert not t.parse(GOOD).faulted
    assert t.parse(BAD).faulted
    with pytest.raises(TargetError, match="restarted 4 times in a row"):
        t.parse(GOOD)
    assert sleeps == [0.01, 0.02], "doubling from the second failed restart"
    assert our_children() == []


def fuzz(*args, timeout=60, env=None):
    return subprocess.run([sys.executable, "-m", "vsock_fuzz", "fuzz", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def test_a_target_that_cannot_start_again_ends_the_campaign_with_exit_2(tmp_path):
    script = tmp_path / "once.py"  # answers hello until a case has crashed it; then never starts
    script.write_text(textwrap.dedent(f"""
        import json, os, sys
        flag = {str(tmp_path / 'crashed')!r}
        if os.path.exists(flag):
            sys.stderr.write("error: cannot open /dev/vhost-vsock\\n")
            sys.exit(3)
        cases = 0
        for line in sys.stdin:
            req = json.loads(line)
            if req.get("op") == "hello":
                print(json.dumps({{"ok": True, "protocol": 1}}), flush=True)
                continue
            cases += 1
            if cases > 1:  # the probe's Linux packet, and a worker's first case, are answered
                open(flag, "w").close()
                os._exit(7)
            print(json.dumps({{"id": req["id"], "ok": False, "error": "NotChecked"}}), flush=True)
    """))
    r = fuzz("--target", f"cmd:{sys.executable} {script}", "--max-time", "40", "--max-restarts", "3",
             "--out", str(tmp_path / "out"), "--minimize-time", "0")
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "exited with status 3" in out, out
    assert "--max-time 40s reached" not in out


@pytest.mark.parametrize("compiled", ["1", "0"], ids=["core", "python"])
def test_inputs_that_crash_the_target_are_not_kept_in_the_corpus(tmp_path, compiled):
    # ring_crash panics on every case whose avail ring is unmapped: most of what libFuzzer
    # makes from an empty corpus. Run as a cmd: program, its code is not ours to cover: the
    # corpus keeps the inputs whose model walk was new, and a crash runs no model. (A py:
    # target's own code is instrumented, so its crash path is coverage of its own.)
    from vsock_fuzz.case.binary import decode
    from vsock_fuzz.targets import open_target
    parse = open_target("py:vsock_fuzz.zoo.ring_crash:parse").parse
    out = tmp_path / "out"
    # Through the compiled core, its counters count only the model's readings, which a crash
    # skips; the oracles' crash path is new once, on either path.
    r = fuzz("--target", f"cmd:{sys.executable} -m vsock_fuzz.zoo.ring_crash", "--max-time", "8", "--seed", "1",
             "--out", str(out), "--minimize-time", "0", timeout=120,
             env={"VSOCK_FUZZ_CORE": compiled, "RUST_BACKTRACE": "1"})
    assert "safety.crash" in r.stdout, r.stdout + r.stderr
    kept = [p.read_bytes() for p in (out / ".corpus" / "atheris").iterdir()]
    crashing = [x for x in kept if parse(decode(x)).faulted]
    assert len(crashing) <= 1, f"{len(crashing)} of {len(kept)} kept inputs crash the target"
