"""`vsock-fuzz fuzz`: progress, summary, exit statuses, findings on disk, interrupts, shared output."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from vsock_fuzz.case.corpus import read_case
from vsock_fuzz.oracles import evaluate
from vsock_fuzz.targets import open_target

PY = sys.executable
SEEDS = Path(__file__).resolve().parent.parent / "corpus" / "target"
PULSE = re.compile(r"^#\d+\tpulse cov: \d+ corp: \d+ exec/s: \d+ findings: \d+/\d+/\d+ rss: \d+Mb$", re.M)
QUEUE_ZERO = "py:vsock_fuzz.zoo.queue_zero:parse"  # virtio-queue #173: a crash on queue size 0, found in about a second


def fuzz(*args, timeout=120):
    return subprocess.run([PY, "-m", "vsock_fuzz", "fuzz", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def start(*args):
    return subprocess.Popen([PY, "-m", "vsock_fuzz", "fuzz", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc, text, limit=60.0) -> str:
    """Read the campaign's output until `text` appears."""
    seen = ""
    end = time.monotonic() + limit
    while text not in seen:
        assert time.monotonic() < end, f"no {text!r} in:\n{seen}"
        line = proc.stdout.readline()
        assert line, f"the campaign ended before {text!r}:\n{seen}{proc.stderr.read()}"
        seen += line
    return seen


def findings_in(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.finding.json"))]


def no_temporary_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def workers_alive(out: Path) -> list[int]:
    """Worker processes of the campaign writing to `out` (its path is on their command line)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if b"vsock_fuzz.engines.worker" in cmd and str(out).encode() in cmd:
                pids.append(int(d.name))
    return pids


def test_reference_is_clean_exit_0_with_progress_and_summary(tmp_path):
    out = tmp_path / "out"
    r = fuzz("--target", "reference", "--max-time", 4, "--out", out, "--seed", 1)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(PULSE.findall(r.stdout)) >= 2  # a steady cadence, libFuzzer-like
    assert "== vsock-fuzz summary: target reference" in r.stdout
    assert "no findings" in r.stdout
    assert int(re.search(r"coverage (\d+), corpus (\d+)", r.stdout)[1]) > 100  # the model is instrumented
    assert findings_in(out) == []


def test_zoo_bug_found_exit_1_and_reproducer_replays(tmp_path):
    out = tmp_path / "out"
    r = fuzz("--target", QUEUE_ZERO, "--max-time", 60, "--stop-on", "safety.crash", "--out", out,
             "--seed", 1, "--minimize-time", 3)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "NEW finding: safety.crash (critical)" in r.stdout
    assert "stopped: --stop-on safety.crash" in r.stdout
    summary = r.stdout.split("== vsock-fuzz summary")[1]
    # One entry per root cause: its severity, oracle and title, counts and rule, reproducer, replay command.
    m = re.search(r"^1\. \[critical\] safety\.crash: crashes .*\n   \d+ distinct finding\(s\), \d+ case\(s\); rule: .*\n"
                  r"   reproducer (\S+)\.bin\n   reproduce: vsock-fuzz replay --target \S+ (\S+)\.bin", summary, re.M)
    assert m and m[1] == m[2], summary
    stem = m[1]
    verbose = fuzz("--target", QUEUE_ZERO, "--runs", 300, "--out", tmp_path / "again", "--seed", 1,
                   "--minimize-time", 0, "--verbose")
    assert re.search(r"^safety\.crash \(critical.*\n  - .*\n    first after [\d.]+s \[atheris\]; reproducer \S+\.bin",
                     verbose.stdout.split("== vsock-fuzz summary")[1], re.M), verbose.stdout
    for suffix in (".bin", ".json", ".finding.json"):
        assert os.path.getsize(stem + suffix) > 0
    found = json.loads(Path(stem + ".finding.json").read_text())
    assert found["oracle"] == "safety.crash"
    # The reproducer still makes the same oracle fire, from either encoding.
    target = open_target(QUEUE_ZERO)
    for suffix in (".bin", ".json"):
        _, fs = evaluate(target, read_case(stem + suffix).case)
        assert "safety.crash" in {f.oracle for f in fs}
    assert no_temporary_files(out)


def test_fail_on_critical_ignores_lesser_findings(tmp_path):
    # two_desc (vm-virtio #204) breaks only interop (error) and conformance rules.
    # From the seeds (Linux layouts among them) and stopped at the finding, not by a clock
    # that a loaded machine could run out of first.
    r = fuzz("--target", "py:vsock_fuzz.zoo.two_desc:parse", "--max-time", 60, "--out", tmp_path,
             "--seed", 1, "--fail-on", "critical", "--minimize-time", 0, "--corpus", SEEDS,
             "--stop-on", "interop.linux-rejected")
    assert r.returncode == 0, r.stdout + r.stderr
    # Below --fail-on: one count line per family (-v lists each root cause).
    assert "  - interop: 1 (error)" in r.stdout and "[error] interop" not in r.stdout
    assert any(f["oracle"] == "interop.linux-rejected" for f in findings_in(tmp_path))


def test_bad_targets_and_options_exit_2_with_one_line(tmp_path):
    cases = [
        (["--target", "cmd:/nonexistent/vsock-target"], "cannot start"),
        (["--target", "cmd:false"], "hello failed"),
        (["--target", "py:no_such_module:parse"], "cannot load"),
        (["--target", "nonsense"], "unknown target"),
        (["--target", "reference", "--corpus", str(tmp_path / "missing")], "does not exist"),
    ]
    for args, why in cases:
        r = fuzz(*args, "--max-time", 2, "--out", tmp_path / "out")
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and why in lines[0], (args, r.stderr)
    r = fuzz("--max-time", 2)  # no --target: argparse's usage error
    assert r.returncode == 2


def test_cmd_target_crash_and_hang_are_findings_and_the_campaign_goes_on(tmp_path):
    for zoo, oracle in (("queue_zero", "safety.crash"), ("loop_hang", "safety.hang")):
        out = tmp_path / zoo
        r = fuzz("--target", f"cmd:{PY} -m vsock_fuzz.zoo.{zoo}", "--max-time", 5, "--timeout", 0.3,
                 "--out", out, "--seed", 1, "--minimize-time", 0, "--corpus", SEEDS)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"NEW finding: {oracle} (critical)" in r.stdout
        assert "stopped: --max-time 5s reached" in r.stdout  # not by the first fault
        at_finding = int(re.search(rf"^#(\d+)\tNEW finding: {re.escape(oracle)}", r.stdout, re.M)[1])
        at_end = int(re.search(r"^#(\d+)\tDONE", r.stdout, re.M)[1])
        assert at_end > at_finding  # the target was restarted and answered more cases
        assert any(f["oracle"] == oracle for f in findings_in(out))


def test_sigint_prints_summary_and_leaves_findings(tmp_path):
    out = tmp_path / "out"
    proc = start("--target", QUEUE_ZERO, "--max-time", 60, "--out", out, "--seed", 1, "--jobs", 2)
    wait_for(proc, "NEW finding: safety.crash")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1, stdout + stderr
    assert "stopped: interrupted by SIGINT" in stdout
    assert "[critical] safety.crash: crashes" in stdout.split("== vsock-fuzz summary")[1]
    fs = findings_in(out)
    assert any(f["oracle"] == "safety.crash" for f in fs)
    for f in fs:  # every finding complete: its case files next to it
        stem = out / f"{f['oracle']}-{__import__('hashlib').sha1(bytes.fromhex(f['binary'])).hexdigest()}"
        assert stem.with_name(stem.name + ".bin").read_bytes() == bytes.fromhex(f["binary"])
    assert no_temporary_files(out)
    assert workers_alive(out) == []


def test_sigterm_and_workers_sharing_one_directory_deduplicate(tmp_path):
    out = tmp_path / "shared"
    # Two campaigns of two workers each, all writing to one directory.
    a = start("--target", QUEUE_ZERO, "--max-time", 60, "--out", out, "--seed", 1, "--jobs", 2)
    b = start("--target", QUEUE_ZERO, "--max-time", 60, "--out", out, "--seed", 7, "--jobs", 2)
    seen = [wait_for(p, "NEW finding: safety.crash") for p in (a, b)]
    time.sleep(1.0)
    for p in (a, b):
        p.send_signal(signal.SIGTERM)
    outs = [s + p.communicate(timeout=30)[0] for s, p in zip(seen, (a, b))]
    assert [p.returncode for p in (a, b)] == [1, 1], outs
    assert all("stopped: interrupted by SIGTERM" in o for o in outs)
    # Each distinct finding (key) claimed once and written once, by whichever worker came first.
    claims = list((out / ".keys").iterdir())
    keys = [f["key"] for f in findings_in(out)]
    assert len(keys) == len(set(keys)) == len(claims)
    assert "already in the directory" in "".join(outs)  # the later campaign saw the other's claim
    assert no_temporary_files(out)
    assert workers_alive(out) == []


def test_hypothesis_engine_drives_the_strategies(tmp_path):
    # tx_writable (spec 2.7.4.1: tx data read from a device-writable buffer): the direction
    # strategies make it in about a second.
    r = fuzz("--target", "py:vsock_fuzz.zoo.tx_writable:parse", "--engine", "hypothesis", "--max-time", 60,
             "--stop-on", "safety.read-writable", "--out", tmp_path, "--seed", 1, "--minimize-time", 0)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"NEW finding: safety\.read-writable \(error\) after [\d.]+s \[hypothesis\]", r.stdout)
    assert re.search(r"\(\d+ exec/s; hypothesis \d+\)", r.stdout)


DIES_AFTER_FIRST_CASE = """
import json, os, sys
marker = sys.argv[1]
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "hello":
        print(json.dumps({"ok": True, "protocol": 1, "name": "dies", "version": "0"}), flush=True)
    elif os.path.exists(marker):
        sys.exit(3)  # every case after the first one, in every process
    else:
        open(marker, "w").close()
        print(json.dumps({"id": req["id"], "ok": False, "error": "Nope"}), flush=True)
"""


def test_target_that_stops_answering_ends_the_campaign_with_exit_2(tmp_path):
    prog = tmp_path / "dies.py"
    prog.write_text(DIES_AFTER_FIRST_CASE)
    out = tmp_path / "out"
    r = fuzz("--target", f"cmd:{PY} {prog} {tmp_path / 'marker'}", "--max-time", 60, "--out", out,
             "--minimize-time", 0)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "stopped: the target cannot be used any more" in r.stdout
    assert re.search(r"^error: .*restarted \d+ times in a row", r.stdout, re.M)
    assert any(f["oracle"] == "safety.crash" for f in findings_in(out))  # what it did is still reported


def test_findings_below_fail_on_are_kept_up_to_a_cap_and_all_counted(tmp_path):
    from dataclasses import replace

    from vsock_fuzz.case.binary import decode, encode_layout
    from vsock_fuzz.engines.worker import KEEP_BELOW, Recorder
    from vsock_fuzz.case.layout import linux_tx
    from vsock_fuzz.oracles import Finding
    case = decode(encode_layout(linux_tx("6.2", 8)))
    _, fs = evaluate(open_target("py:vsock_fuzz.zoo.two_desc:parse"), case)
    error = next(f for f in fs if f.severity == "error")
    warning = next(f for f in fs if f.severity == "warning")
    sent = []
    rec = Recorder(str(tmp_path), sent.append, "error")
    # Distinct keys (signatures) on distinct cases, as a lenient device answers them.
    many = [replace(warning, signature=f"s{i}", case=case._replace(max_data_size=i)) for i in range(KEEP_BELOW + 10)]
    rec.record(many + [replace(error, signature=f"e{i}", case=case._replace(max_data_size=i)) for i in range(KEEP_BELOW + 5)])
    assert isinstance(many[0], Finding)
    assert len(sent) == 2 * KEEP_BELOW + 15  # every distinct finding reported
    on_disk = [json.loads(p.read_text())["severity"] for p in tmp_path.glob("*.finding.json")]
    assert on_disk.count("warning") == KEEP_BELOW
    assert on_disk.count("error") == KEEP_BELOW + 5  # at or above --fail-on: every one kept


def test_hit_counts_reach_the_parent_as_the_keys_hit_since_the_last_report(tmp_path):
    from vsock_fuzz.case.binary import decode, encode_layout
    from vsock_fuzz.case.layout import linux_tx
    from vsock_fuzz.engines.pool import Pool, Worker
    from vsock_fuzz.engines.worker import Recorder
    case = decode(encode_layout(linux_tx("6.2", 8)))
    _, fs = evaluate(open_target("py:vsock_fuzz.zoo.two_desc:parse"), case)
    a, b = fs[0].key(), fs[1].key()
    rec = Recorder(str(tmp_path), lambda msg: None, "critical")
    pool, worker = Pool(None, None, print, lambda: False), Worker(0, "atheris", None, None)
    rec.record(fs)
    rec.record(fs[:1])
    first = rec.hits_since()
    assert first == {a: 2, b: 1}
    pool.on_stats(worker, json.dumps({"execs": 2, "hits": first}).encode())
    rec.record(fs[:1])
    assert rec.hits_since() == {a: 3}  # b was not hit again: not sent again
    pool.on_stats(worker, json.dumps({"execs": 3, "hits": {a: 3}}).encode())
    assert rec.hits_since() == {}
    assert worker.hits == rec.hits == {a: 3, b: 1}


def test_minimized_note_compares_binary_forms_and_owns_up_when_it_grew():
    from vsock_fuzz.engines.summary import minimized_note
    assert minimized_note(300, 120) == " (minimized: binary form 300 -> 120 bytes)"
    grew = minimized_note(120, 130)
    assert "-> 130" not in grew and "binary form is 130 bytes, was 120" in grew


def test_a_worker_whose_last_words_outgrow_the_pipe_exits_with_them_read(tmp_path):
    """pool.stop reads while the workers exit: a last stats line longer than the pipe holds
    (a lenient device's thousands of keys) once left its worker blocked until it was killed."""
    import subprocess

    from vsock_fuzz.engines.pool import Pool, Worker
    hits = {f"conformance.valid-rejected:tx:{i:06d}": i for i in range(8000)}  # about 400 KB of JSON
    (tmp_path / "hits.json").write_text(json.dumps(hits))
    script = tmp_path / "worker.py"
    script.write_text("""
import json, os, signal, sys, time
def last_words(*_):
    hits = json.load(open(sys.argv[2]))
    os.write(int(sys.argv[1]), (json.dumps({"execs": 7, "hits": hits}) + "\\n").encode())
    os._exit(0)
signal.signal(signal.SIGTERM, last_words)
print("ready", flush=True)
time.sleep(60)
""")
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, str(script), str(w), str(tmp_path / "hits.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            pass_fds=(w,), start_new_session=True)
    os.close(w)
    assert proc.stdout.readline() == b"ready\n"
    os.set_blocking(r, False)
    os.set_blocking(proc.stderr.fileno(), False)
    pool = Pool(None, None, print, lambda: False)
    pool.workers = [Worker(0, "atheris", proc, r)]
    start = time.monotonic()
    pool.stop()
    assert time.monotonic() - start < 2.0
    assert proc.returncode == 0  # exited, not killed
    assert pool.workers[0].hits == hits and pool.workers[0].execs == 7
