"""The shared target options (--start-timeout, --max-restarts, --rlimit-as, --rlimit-cpu,
--transport) reach the target of every command that opens one."""

import argparse
import glob
import os
import sys

import pytest

import vsock_fuzz.targets as targets
from vsock_fuzz.cli import main
from vsock_fuzz.cli.options import add_target_options, open_target_from_args
from vsock_fuzz.targets.frames import MODE as FRAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASE = sorted(glob.glob(os.path.join(ROOT, "corpus", "regressions", "*.bin")))[0]
SERVE = f"cmd:{sys.executable} -m vsock_fuzz serve"


def parse(*argv):
    p = argparse.ArgumentParser()
    add_target_options(p)
    return p.parse_args(["--target", SERVE, *argv])


@pytest.fixture
def opened(monkeypatch):
    """The targets the commands open, kept so a test can look at how they were set up."""
    seen, real = [], targets.open_target

    def spy(spec, **kw):
        seen.append(real(spec, **kw))
        return seen[-1]
    monkeypatch.setattr(targets, "open_target", spy)
    return seen


def test_sizes_take_suffixes_and_bad_values_are_usage_errors(capsys):
    assert parse("--rlimit-as", "512M").rlimit_as == 512 << 20
    assert parse("--rlimit-as", "2g").rlimit_as == 2 << 30
    assert parse("--rlimit-as", "4096").rlimit_as == 4096
    for bad in (("--rlimit-as", "lots"), ("--rlimit-as", "0"), ("--max-restarts", "-1"),
                ("--rlimit-cpu", "0"), ("--start-timeout", "0"), ("--transport", "v2")):
        with pytest.raises(SystemExit) as e:
            parse(*bad)
        assert e.value.code == 2
    assert "is not a size" in capsys.readouterr().err


def test_options_reach_the_command_target():
    t = open_target_from_args(parse("--start-timeout", "3", "--max-restarts", "0", "--rlimit-as", "1G",
                                    "--rlimit-cpu", "30", "--transport", "v1"))
    try:
        assert (t.start_timeout, t.max_restarts, t.modes) == (3.0, 0, ())
        assert dict(t.rlimits) == {"RLIMIT_AS": 1 << 30, "RLIMIT_CPU": 30}
    finally:
        t.close()


@pytest.mark.parametrize("transport", ["v1", "auto"])
def test_replay_over_the_chosen_transport(capsys, opened, transport):
    rc = main(["replay", CASE, "--target", SERVE, "--transport", transport])
    assert rc == 0, capsys.readouterr()
    assert "1 ok" in capsys.readouterr().out
    # serve picks the fast transport when offered; with --transport v1 it is not offered.
    assert opened[0].mode == ("v1" if transport == "v1" else FRAMES)


@pytest.mark.parametrize("command", ["replay", "minimize", "check"])
def test_too_small_rlimit_as_keeps_the_target_from_starting(capsys, tmp_path, command):
    extra = {"replay": [CASE], "minimize": [CASE, "--out", str(tmp_path)], "check": []}[command]
    rc = main([command, *extra, "--target", SERVE, "--rlimit-as", "4M"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"vsock-fuzz {command}: " in err and ("hello failed" in err or "cannot start" in err)


def test_fuzz_probe_opens_the_target_with_the_options(capsys, tmp_path):
    rc = main(["fuzz", "--target", SERVE, "--rlimit-as", "4M", "--runs", "1", "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 2
    assert "hello failed" in out.out + out.err


def test_minimizer_resets_the_backoff_between_crashing_candidates():
    from vsock_fuzz.case.layout import assemble, linux_tx
    from vsock_fuzz.engines.minimize import fires
    bad = assemble(linux_tx("6.2", 64))._replace(max_data_size=666)  # misbehave.py's trigger
    argv = [sys.executable, os.path.join(ROOT, "tests", "targets", "misbehave.py"), "abort"]
    t = targets.CommandTarget(argv, max_restarts=2)
    try:
        crashes = fires(t, "safety.crash")
        assert all(crashes(bad) for _ in range(4))  # four crashes in a row, a cap of two
        assert t.failures == 0  # no back-off sleep before the next candidate
        t.parse(bad)
        assert t.failures == 1  # without the reset the count goes on
    finally:
        t.close()



def test_campaign_options_default_to_no_target_limits():
    from vsock_fuzz.engines.campaign import Campaign, Options
    assert Options("reference").target_options == {}
    t = Campaign(Options(SERVE, target_options={"modes": [], "rlimit_as": 1 << 30})).open_target()
    try:
        t.start()
        assert t.mode == "v1" and dict(t.rlimits) == {"RLIMIT_AS": 1 << 30}
    finally:
        t.close()
