"""The rough edges of the command line a new user hits: usage errors that say what is wrong,
reproduce commands that work from where the user stands, --version, the same -q/-v/--fail-on
on every command that judges, the subcommand's usage on a bad flag, a hint for libFuzzer's
flags, --max-time as the campaign's wall budget, JSON to a terminal, what is kept on disk."""

import json
import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vsock_fuzz import __version__
from vsock_fuzz.case.binary import encode
from vsock_fuzz.case.corpus import read_case
from vsock_fuzz.cli import main

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
TWO_DESC = "py:vsock_fuzz.zoo.two_desc:parse"  # rejects the Linux >= 6.2 one-descriptor tx layout
ROW = "^tx/linux-6.2/1KiB$"


def usage_error(capsys, *argv) -> str:
    """Run the command line in-process; it must end with exit status 2; its stderr."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    assert e.value.code == 2, argv
    return capsys.readouterr().err


def run_main(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# --- usage errors ----------------------------------------------------------------------------

def test_unknown_stop_on_names_the_typo_and_the_known_ones(tmp_path, capsys):
    code, _, err = run_main(capsys, "fuzz", "--target", "reference", "--stop-on", "safety.crahs", "--max-time", 1,
                            "--out", tmp_path)
    assert code == 2
    line, = err.strip().splitlines()
    assert "--stop-on safety.crahs: no such oracle or family" in line
    assert "safety.crash" in line and "determinism" in line and "or fail" in line
    code, _, err = run_main(capsys, "fuzz", "--target", "reference", "--stop-on", "safety", "safty", "fail",
                            "--max-time", 1, "--out", tmp_path)
    assert code == 2 and "--stop-on safty:" in err  # only the unknown one is named
    assert not list(tmp_path.iterdir())  # refused before anything ran


@pytest.mark.parametrize("argv, what", [
    (["fuzz", "--minimize-time", "-3"], "--minimize-time"),
    (["fuzz", "--max-time", "0"], "--max-time"),
    (["fuzz", "--max-time", "-1"], "--max-time"),
    (["fuzz", "--max-time", "nan"], "--max-time"),
    (["fuzz", "--runs", "0"], "--runs"),
    (["fuzz", "--jobs", "0"], "--jobs"),
    (["fuzz", "--seed", "-1"], "--seed"),
    (["fuzz", "--timeout", "-1"], "--timeout"),
    (["check", "--timeout", "0"], "--timeout"),
    (["replay", "x", "--timeout", "-2"], "--timeout"),
    (["minimize", "x", "--budget", "0"], "--budget"),
    (["minimize", "x", "--max-time", "-2"], "--max-time"),
])
def test_numbers_that_make_no_sense_are_usage_errors(capsys, argv, what):
    err = usage_error(capsys, *argv, "--target", "reference")
    assert f"usage: vsock-fuzz {argv[0]}" in err and f"argument {what}" in err


def test_minimizing_longer_than_the_campaign_is_a_usage_error(tmp_path, capsys):
    code, _, err = run_main(capsys, "fuzz", "--target", "reference", "--max-time", 5, "--minimize-time", 5,
                            "--out", tmp_path)
    assert code == 2 and "--minimize-time 5 must be less than --max-time 5" in err


def test_a_bad_row_expression_is_a_usage_error_not_a_traceback():
    r = subprocess.run([PY, "-m", "vsock_fuzz", "check", "--target", "reference", "--row", "["],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "argument --row: '[' is not a regular expression: unterminated character set" in r.stderr


def test_minimize_names_an_unknown_oracle(tmp_path, capsys):
    case = tmp_path / "c.bin"
    case.write_bytes(b"")
    code, _, err = run_main(capsys, "minimize", case, "--target", "reference", "--oracle", "safety.crahs")
    assert code == 2 and "--oracle safety.crahs: no such oracle" in err and "safety.crash" in err


# --- the parser --------------------------------------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"vsock-fuzz {__version__}"


def test_an_unknown_flag_prints_the_subcommands_usage(capsys):
    for command, args in (("replay", ["x"]), ("check", []), ("fuzz", []), ("convert", ["a", "b"])):
        err = usage_error(capsys, command, *args, "--target", "reference", "--bogus")
        assert err.startswith(f"usage: vsock-fuzz {command}"), err
        assert re.search(r"error: unrecognized arguments: .*--bogus$", err.strip()), err


def test_a_libfuzzer_flag_names_its_equivalent_and_the_harnesses(capsys):
    err = usage_error(capsys, "fuzz", "--target", "reference", "-max_total_time=10")
    assert err.startswith("usage: vsock-fuzz fuzz")
    assert "-max_total_time=10 is a libFuzzer flag" in err and "--max-time 10" in err
    assert "harnesses in harnesses/ take libFuzzer flags directly" in err
    for flag, ours in (("-runs=100", "--runs 100"), ("-jobs=4", "--jobs 4"), ("-dict=x.dict", "--dict x.dict"),
                       ("-seed=7", "--seed 7"), ("-verbosity=1", "-v or -q")):
        assert ours in usage_error(capsys, "fuzz", "--target", "reference", flag), flag
    # One vsock-fuzz has no equivalent of: its own options are listed.
    assert "--max-time, --runs, --jobs" in usage_error(capsys, "replay", "x", "--target", "reference", "-max_len=9")
    # A value after -- is not an option.
    assert "libFuzzer" not in usage_error(capsys, "convert", "--bogus", "--", "-runs=1")


def test_q_v_and_fail_on_on_every_command_that_judges(capsys):
    wanted = {"fuzz": ("-q,", "-v,", "--fail-on"), "check": ("-q,", "-v,", "--fail-on"),
              "replay": ("-q,", "-v,", "--fail-on"), "minimize": ("-q,", "-v,")}
    for command, flags in wanted.items():
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        for flag in flags:
            assert flag in text, (command, flag)
        if command != "minimize":
            assert "--fail-on {critical,error,warning}" in text


def test_check_fail_on_is_the_lowest_failing_severity_and_its_default_the_verdicts(capsys):
    # two_desc rejects the Linux 6.2 layout: an interop failure, an error-severity finding.
    assert run_main(capsys, "check", "--target", TWO_DESC, "--row", ROW)[0] == 1
    assert run_main(capsys, "check", "--target", TWO_DESC, "--row", ROW, "--fail-on", "error")[0] == 1
    code, out, _ = run_main(capsys, "check", "--target", TWO_DESC, "--row", ROW, "--fail-on", "critical")
    assert code == 0 and "--fail-on critical: nothing at or above it" in out
    assert "interop       FAIL" in out  # the verdicts are still shown as they are
    # A row that only warns: failing at warning, clean by default.
    code, out, _ = run_main(capsys, "check", "--target", "reference:rust-vmm", "--row", "^tx/header-split@1$")
    assert code == 0 and "warn" in out
    assert run_main(capsys, "check", "--target", "reference:rust-vmm", "--row", "^tx/header-split@1$",
                    "--fail-on", "warning")[0] == 1


def test_check_verbose_shows_warnings_under_their_rows(capsys):
    argv = ("check", "--target", "reference:rust-vmm", "--row", "^tx/header-split@1$")
    _, plain, _ = run_main(capsys, *argv)
    _, verbose, _ = run_main(capsys, *argv, "-v")
    assert "tx/header-split@1" in plain and "differential.model (warning)" not in plain
    assert "  tx/header-split@1: differential.model (warning): " in verbose
    _, quiet, _ = run_main(capsys, *argv, "-q", "-v")  # -q: a warn row is no failing row
    assert "tx/header-split@1" not in quiet.split("\n\n")[0]


# --- reproduce commands ------------------------------------------------------------------------

def test_reproduce_commands_work_from_where_the_user_stands(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_main(capsys, "check", "--target", TWO_DESC, "--row", ROW, "--out", "ci/findings")[0] == 1
    kept = sorted(Path("ci/findings").glob("*.finding.json"))
    assert kept
    for path in kept:
        reproduce = json.loads(path.read_text())["reproduce"]
        argv = shlex.split(reproduce)
        assert argv[-1] == str(path).removesuffix(".finding.json") + ".bin"
        code, out, err = run_main(capsys, *argv[1:])  # from the directory check ran in
        assert code == 1 and ": finding: " in out, err
    # show, run from elsewhere, names the file as the user gave it.
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    given = os.path.join("..", str(kept[0]))
    _, out, _ = run_main(capsys, "show", given)
    reproduce = re.search(r"^  reproduce: (.*)$", out, re.M)[1]
    assert shlex.split(reproduce)[-1] == given.removesuffix(".finding.json") + ".bin"
    code, out, err = run_main(capsys, *shlex.split(reproduce)[1:])
    assert code == 1 and ": finding: " in out, err


def test_an_unwritten_finding_keeps_its_bare_file_name():
    from vsock_fuzz.engines import check
    from vsock_fuzz.targets import open_target
    findings = [f for r in check.run(open_target(TWO_DESC), pattern=ROW) for f in r.findings]
    assert findings
    for f in findings:
        assert f.reproduce().endswith(f" {f.file_stem()}.bin")
        assert f.to_json(path="a dir/x.bin")["reproduce"].endswith(" 'a dir/x.bin'")


# --- replay ------------------------------------------------------------------------------------

def test_replay_of_an_empty_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "only-skipped").mkdir()
    (tmp_path / "only-skipped" / "README.md").write_text("nothing here\n")
    (tmp_path / "only-skipped" / ".corpus").mkdir()
    for folder in (tmp_path / "only-skipped", tmp_path / "only-skipped" / ".corpus"):
        report = tmp_path / "r.json"
        code, _, err = run_main(capsys, "replay", folder, "--target", "reference", "--json", report)
        assert code == 2 and f"no case files in {folder}" in err
        rep = json.loads(report.read_text())
        assert rep["status"] == "error" and "no case files" in rep["error"]


# --- convert to a terminal --------------------------------------------------------------------

def _convert_to_tty(*args) -> tuple[int, bytes, str]:
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen([PY, "-m", "vsock_fuzz", "convert", *map(str, args)], stdout=secondary,
                                stderr=subprocess.PIPE)
        os.close(secondary)
        data = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other end closed
                break
            if not chunk:
                break
            data += chunk
        err = proc.stderr.read().decode()
        return proc.wait(timeout=60), data, err
    finally:
        os.close(primary)


def test_convert_to_a_terminal_writes_json_and_refuses_binary(tmp_path):
    src = next((ROOT / "corpus" / "target").iterdir())
    case = read_case(str(src)).case
    code, data, err = _convert_to_tty(src, "-")
    assert code == 0, err
    assert json.loads(data.replace(b"\r\n", b"\n"))["queue"] == case.queue
    code, data, err = _convert_to_tty(src, "-", "--to", "bin")
    assert code == 2 and data == b"" and "not writing the binary form to a terminal" in err
    # Not a terminal: the binary form, as before.
    r = subprocess.run([PY, "-m", "vsock_fuzz", "convert", str(src), "-"], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == encode(case)


# --- what is kept on disk ---------------------------------------------------------------------

def test_readme_help_and_docs_say_the_same_about_what_is_kept(capsys):
    from vsock_fuzz.engines.worker import KEEP_BELOW
    readme = (ROOT / "README.md").read_text()
    assert "every finding on disk" not in readme
    assert f"the first {KEEP_BELOW} distinct per oracle and worker below it" in readme
    with pytest.raises(SystemExit):
        main(["fuzz", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"the first {KEEP_BELOW} distinct per oracle and worker below it" in help_text


# --- --max-time is the wall budget ------------------------------------------------------------

# queue_zero (a crash on queue size 0, found in about a second), slow only outside the fuzz
# workers: minimizing, in the campaign's own process, takes whatever time it is given.
SLOW_TO_MINIMIZE = """
import sys, time
from vsock_fuzz.zoo.queue_zero import parse as _parse
IN_WORKER = "engines/worker" in sys.argv[0].replace("\\\\", "/")

def parse(case):
    if not IN_WORKER:
        time.sleep(0.05)
    return _parse(case)
"""


def _slow_target(tmp_path) -> tuple[str, dict]:
    (tmp_path / "slowmin.py").write_text(SLOW_TO_MINIMIZE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    return "py:slowmin:parse", env


def test_max_time_is_the_wall_budget_minimizing_included(tmp_path):
    target, env = _slow_target(tmp_path)
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = subprocess.run([PY, "-m", "vsock_fuzz", "fuzz", "--target", target, "--max-time", "6", "--seed", "1", "-q",
                        "--out", str(out)], capture_output=True, text=True, timeout=60, env=env)
    wall = time.monotonic() - t0
    assert r.returncode == 1, r.stdout + r.stderr
    assert "stopped: --max-time 6s reached (fuzzing 4.5s, then minimizing up to 1.5s)" in r.stdout
    assert wall < 6 + 3.5, wall  # not 6 s of fuzzing and then 5 s of minimizing
    assert "pulse" not in r.stdout and "NEW finding: safety.crash" in r.stdout  # -q: no pulse lines


def test_an_interrupt_while_minimizing_stops_minimizing_only(tmp_path):
    target, env = _slow_target(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen([PY, "-m", "vsock_fuzz", "fuzz", "--target", target, "--max-time", "60", "--seed", "1",
                             "--stop-on", "safety.crash", "--minimize-time", "40", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = ""
    while "\tDONE " not in seen:  # fuzzing is over, minimizing has begun
        line = proc.stdout.readline()
        assert line, seen + proc.stderr.read()
        seen += line
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 1, stdout + stderr  # the crash, not an interrupted campaign
    assert ("stopped: --stop-on safety.crash; minimizing cut short by SIGINT "
            "(the reproducers not minimized yet are kept as found)") in stdout
    assert "interrupted by SIGINT" not in stdout
    assert any(p.name.startswith("safety.crash-") for p in out.glob("*.finding.json"))


def test_printed_commands_say_how_to_run_them_when_vsock_fuzz_is_not_on_path(tmp_path):
    """A checkout's .venv not activated: the reproduce lines say `vsock-fuzz ...`; one note says how
    to make them run as printed. With the entry point on PATH, no note."""
    import shutil as _shutil
    entry = Path(sys.executable).parent / "vsock-fuzz"
    assert entry.exists()
    argv = [str(entry), "check", "--target", "py:vsock_fuzz.zoo.region_end:parse", "-q"]
    bare = {**os.environ, "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                                  if not Path(p, "vsock-fuzz").exists())}
    assert _shutil.which("vsock-fuzz", path=bare["PATH"]) is None
    r = subprocess.run(argv, capture_output=True, text=True, env=bare, cwd=tmp_path, timeout=120)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr
    assert f"export PATH={entry.parent}:$PATH" in r.stderr
    on_path = {**os.environ, "PATH": f"{entry.parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(argv, capture_output=True, text=True, env=on_path, cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and "not on PATH" not in r.stderr
