"""One bug, one entry: devices that die at different sites give crash root causes of their
own, titled by the site (targets.crash_title); one site hit again is one root cause. A
campaign runs its target without Rust backtraces and runs a new crash's case once more with
them, so the finding on disk keeps the backtrace.

The devices are tests/targets/dying.py, a foreign program printing what Rust, glibc and
AddressSanitizer print; a real Rust program and a real C assert are built when rustc or cc is
at hand."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from vsock_fuzz.case.layout import assemble, linux_rx, linux_tx
from vsock_fuzz.engines.worker import Recorder, with_backtrace
from vsock_fuzz.oracles import evaluate
from vsock_fuzz.oracles.triage import of_findings
from vsock_fuzz.targets import CommandTarget

ROOT = Path(__file__).resolve().parent.parent
DYING = Path(__file__).parent / "targets" / "dying.py"
TX = assemble(linux_tx("6.2", 5))
ODD_TX = TX._replace(max_data_size=667)   # dying.py dies on an odd max_data_size
ODD_TX_AGAIN = TX._replace(max_data_size=4097)
ODD_RX = assemble(linux_rx("6.2"))._replace(max_data_size=667)
ODD_TX_INDIRECT = assemble(linux_tx("6.2", 5, indirect=True))._replace(max_data_size=667)


def dying(kind: str, site: str = "", **kw) -> CommandTarget:
    kw.setdefault("timeout", 2.0)
    kw.setdefault("modes", ())
    return CommandTarget([sys.executable, str(DYING), kind, site], **kw)


def crash_causes(runs) -> list:
    """The safety.crash root causes of (target, case) runs."""
    found = []
    for target, case in runs:
        _, findings = evaluate(target, case)
        found += [(f, None, None) for f in findings if f.oracle == "safety.crash"]
    assert found, "the devices crashed"
    return [c for c in of_findings(found) if c.oracle == "safety.crash"]


@pytest.mark.parametrize("kind, here, there", [("panic", "src/tx.rs:40:17", "src/tx.rs:52:9"),
                                               ("assert", "pkt.c:88", "ring.c:31")])
def test_two_devices_dying_at_two_sites_are_two_root_causes(kind, here, there):
    a, b = dying(kind, here), dying(kind, there)
    try:
        causes = crash_causes([(a, ODD_TX), (b, ODD_TX)])
    finally:
        a.close()
        b.close()
    assert len(causes) == 2, [c.title for c in causes]
    titles = sorted(c.title for c in causes)
    assert titles[0] != titles[1]
    assert all(c.title.startswith("crashes (") for c in causes)
    assert any(here in t for t in titles) and any(there in t for t in titles), titles


def test_one_site_hit_on_other_cases_and_other_processes_is_one_root_cause():
    a = dying("panic", "src/tx.rs:40:17")
    try:
        # Another index in the message, another pid and thread id, another queue, a chain through
        # an indirect table (the site says where the device died; a direct and an indirect walk
        # are two bugs only when no site tells them apart): one bug.
        causes = crash_causes([(a, ODD_TX), (a, ODD_TX_AGAIN), (a, ODD_RX), (a, ODD_TX_INDIRECT)])
    finally:
        a.close()
    assert [c.title for c in causes] == [
        "crashes (panicked at src/tx.rs:40:17: index out of bounds: the len is N but the index is N)"]
    assert len(set(causes[0].members)) == 2, "tx (direct or indirect) and rx: two findings of the one root cause"


def test_a_crash_finding_keeps_the_stderr_tail_and_is_titled_from_all_of_it():
    # The ASan report names the site at its top, further back than an answer's detail reaches.
    t = dying("asan", "src/pkt.c:6:28")
    try:
        answer, findings = evaluate(t, ODD_TX)
    finally:
        t.close()
    crash = next(f for f in findings if f.oracle == "safety.crash")
    assert "fill_packet" not in answer.detail, "the detail holds the end of the report only"
    assert crash.signature == "heap-buffer-overflow in fill_packet dev/src/pkt.c:6:28"
    assert crash.message.startswith("the target crashed: exited with status 1; stderr: ")
    assert crash.message.endswith("==ABORTING"), "the message keeps the stderr tail"


def test_a_target_env_holds_over_the_shell_s_and_restart_with_adds_to_it_once(tmp_path, monkeypatch):
    log = tmp_path / "deaths"
    monkeypatch.setenv("RUST_BACKTRACE", "1")  # a developer's shell
    monkeypatch.setenv("DYING_LOG", str(log))
    t = dying("panic", "src/tx.rs:40:17", env={"RUST_BACKTRACE": "0"})
    try:
        first = t.parse(ODD_TX)
        assert not t.parse(TX).faulted and t._spare is not None  # a spare, started without the extra env
        t.restart_with({"RUST_BACKTRACE": "1"})
        assert t._spare is None and t.proc is None
        second = t.parse(ODD_TX)
        third = t.parse(ODD_TX)
    finally:
        t.close()
    assert log.read_text().split() == ["RUST_BACKTRACE=0", "RUST_BACKTRACE=1", "RUST_BACKTRACE=0"]
    assert "stack backtrace:" not in first.detail and "stack backtrace:" in second.detail
    assert "stack backtrace:" not in third.detail
    assert first.title == second.title == third.title


def test_the_recorder_runs_a_new_crash_again_with_a_backtrace_once(tmp_path, monkeypatch):
    log = tmp_path / "deaths"
    monkeypatch.setenv("DYING_LOG", str(log))
    t = dying("panic", "src/tx.rs:40:17", env={"RUST_BACKTRACE": "0"})
    sent = []
    rec = Recorder(str(tmp_path / "out"), sent.append, "warning", t)
    try:
        for case in (ODD_TX, ODD_TX_AGAIN):  # the second is the same finding, seen again
            _, findings = evaluate(t, case, determinism=False)
            rec.record([f for f in findings if f.oracle == "safety.crash"])
    finally:
        t.close()
    assert log.read_text().split() == ["RUST_BACKTRACE=0", "RUST_BACKTRACE=1", "RUST_BACKTRACE=0"]
    [written] = list((tmp_path / "out").glob("*.finding.json"))
    on_disk = json.loads(written.read_text())
    assert "stack backtrace:" in on_disk["message"] and "dying::tx_packet" in on_disk["message"]
    assert on_disk["signature"] == ("panicked at src/tx.rs:40:17: "
                                    "index out of bounds: the len is N but the index is N")
    assert [m["finding"]["new"] for m in sent] == [True]


def test_with_backtrace_leaves_a_finding_whose_case_now_crashes_elsewhere():
    t = dying("panic", "src/tx.rs:40:17")
    try:
        _, findings = evaluate(t, ODD_TX, determinism=False)
        crash = next(f for f in findings if f.oracle == "safety.crash")
        elsewhere = replace(crash, signature="panicked at src/other.rs:1:1: x")
        assert with_backtrace(t, elsewhere) is elsewhere
        assert "stack backtrace:" in with_backtrace(t, crash).message
    finally:
        t.close()


def test_a_campaign_runs_the_target_without_backtraces_but_keeps_one_per_finding(tmp_path):
    log, out = tmp_path / "deaths", tmp_path / "out"
    env = {**os.environ, "RUST_BACKTRACE": "1", "DYING_LOG": str(log)}
    r = subprocess.run([sys.executable, "-m", "vsock_fuzz", "fuzz", "--target",
                        f"cmd:{sys.executable} {DYING} queues", "--max-time", "8", "--seed", "1",
                        "--out", str(out), "--minimize-time", "0"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    said = r.stdout + r.stderr
    assert r.returncode == 1 and (out / "root-causes.json").exists(), said
    titles = {c["title"] for c in json.loads((out / "root-causes.json").read_text())["root_causes"]
              if c["oracle"] == "safety.crash"}
    assert titles == {"crashes (panicked at src/tx.rs:40:17: index out of bounds: the len is N but the index is N)",
                      "crashes (panicked at src/rx.rs:88:9: index out of bounds: the len is N but the index is N)"}, said
    assert "crashes (panicked at src/rx.rs:88:9" in r.stdout, "the summary names the site"
    written = [json.loads(p.read_text()) for p in out.glob("safety.crash-*.finding.json")]
    assert written and all("stack backtrace:" in f["message"] for f in written)
    deaths = log.read_text().split()
    assert deaths.count("RUST_BACKTRACE=1") == len(written), "one run with a backtrace per finding written"
    assert deaths.count("RUST_BACKTRACE=0") > 2 * len(written), "every other crash without one"
    assert set(deaths) == {"RUST_BACKTRACE=0", "RUST_BACKTRACE=1"}


# --- real runtimes ---------------------------------------------------------------------

RUST_DEVICE = textwrap.dedent("""
    use std::io::{self, BufRead, Write};

    fn number_after(line: &str, key: &str) -> usize {
        line.find(key).map_or(0, |i| {
            line[i + key.len()..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap_or(0)
        })
    }

    fn tx_packet(hdr: &[u8], n: usize) -> u8 { hdr[n] }
    fn rx_packet(hdr: &[u8], n: usize) -> u8 { hdr[..n][0] }

    fn main() {
        let hdr = vec![0u8; 44];
        let mut out = io::stdout();
        for line in io::stdin().lock().lines() {
            let line = line.unwrap();
            if line.contains("hello") {
                writeln!(out, "{{\\"ok\\":true,\\"protocol\\":1}}").unwrap();
            } else {
                let n = number_after(&line, "\\"max_data_size\\":");
                if n % 2 == 1 {
                    if line.contains("\\"queue\\":\\"rx\\"") { rx_packet(&hdr, n); } else { tx_packet(&hdr, n); }
                }
                writeln!(out, "{{\\"id\\":{},\\"ok\\":false,\\"error\\":\\"NotChecked\\"}}",
                         number_after(&line, "\\"id\\":")).unwrap();
            }
            out.flush().unwrap();
        }
    }
""")

C_DEVICE = textwrap.dedent("""
    #include <assert.h>
    #include <stdio.h>
    #include <string.h>

    static long number_after(const char *line, const char *key) {
        const char *p = strstr(line, key);
        return p ? atol(p + strlen(key)) : 0;
    }
    static void tx_packet(long n) { assert(n % 2 == 0 && "tx payload is even"); }
    static void rx_packet(long n) { assert(n < 44); }

    int main(void) {
        static char line[1 << 20];
        while (fgets(line, sizeof line, stdin)) {
            if (strstr(line, "hello")) { puts("{\\"ok\\":true,\\"protocol\\":1}"); fflush(stdout); continue; }
            long n = number_after(line, "\\"max_data_size\\":");
            if (n % 2) { if (strstr(line, "\\"queue\\":\\"rx\\"")) rx_packet(n); else tx_packet(n); }
            printf("{\\"id\\":%ld,\\"ok\\":false,\\"error\\":\\"NotChecked\\"}\\n", number_after(line, "\\"id\\":"));
            fflush(stdout);
        }
        return 0;
    }
""").replace("#include <string.h>", "#include <string.h>\n#include <stdlib.h>")


def build(tmp_path_factory, compiler: str, source: str, suffix: str, *flags: str) -> Path:
    exe = shutil.which(compiler)
    if exe is None:
        pytest.skip(f"{compiler} is not on PATH")
    d = tmp_path_factory.mktemp(compiler)
    (d / f"device{suffix}").write_text(source)
    subprocess.run([exe, *flags, f"device{suffix}", "-o", "device"], cwd=d, check=True, capture_output=True)
    return d / "device"


@pytest.mark.parametrize("compiler, source, suffix, flags", [
    ("rustc", RUST_DEVICE, ".rs", ("-g",)), ("cc", C_DEVICE, ".c", ("-g",))])
def test_a_real_device_s_two_sites_are_two_root_causes_and_one_site_is_one(
        tmp_path_factory, monkeypatch, compiler, source, suffix, flags):
    monkeypatch.setenv("RUST_BACKTRACE", "1")  # a backtrace changes no title
    exe = build(tmp_path_factory, compiler, source, suffix, *flags)
    t = CommandTarget([str(exe)], timeout=5.0, modes=())
    try:
        causes = crash_causes([(t, ODD_TX), (t, ODD_TX_AGAIN), (t, ODD_RX)])
    finally:
        t.close()
    titles = sorted(c.title for c in causes)
    assert len(titles) == 2, titles
    if compiler == "rustc":
        assert titles == ["crashes (panicked at device.rs:10:44: index out of bounds: the len is N but the index is N)",
                          "crashes (panicked at device.rs:11:47: range end index N out of range for slice "
                          "of length N)"]
    else:
        assert titles == ["crashes (device.c:11: tx_packet: Assertion `n % 2 == 0 && \"tx payload is even\"' failed.)",
                          "crashes (device.c:12: rx_packet: Assertion `n < 44' failed.)"]
