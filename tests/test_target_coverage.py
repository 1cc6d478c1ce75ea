"""The coverage channel shm-8bit-v1 (docs/protocol-extensions.md): negotiated in hello, a
memfd region kept across restarts, a target that writes garbage into it, and campaigns that
libFuzzer guides with the C target's own edges."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vsock_fuzz.case.layout import assemble, linux_tx, plain_packet
from vsock_fuzz.targets import CommandTarget
from vsock_fuzz.targets.base import TargetError
from vsock_fuzz.targets.coverage import CHANNEL, ENV_FD, ENV_SIZE, SIZE, Region

ROOT = Path(__file__).resolve().parent.parent
COVTARGET = Path(__file__).parent / "targets" / "covtarget.py"
C_DIR = ROOT / "examples" / "c-target"


def covtarget(mode: str, **kw) -> CommandTarget:
    t = CommandTarget([sys.executable, str(COVTARGET), mode], **kw)
    return t


def crash_case():
    return plain_packet()._replace(max_data_size=666)


@pytest.fixture
def region():
    r = Region()
    yield r
    r.close()


def test_region_is_a_sealed_memfd(region):
    assert region.size == SIZE and region.nonzero() == 0
    kw = region.child()
    assert kw["pass_fds"] == (region.fd,)
    assert kw["env"][ENV_FD] == str(region.fd) and kw["env"][ENV_SIZE] == str(SIZE)
    for length in (0, SIZE // 2, SIZE * 2):  # a target cannot make our mapping fault
        with pytest.raises(OSError):
            os.ftruncate(region.fd, length)
    assert os.fstat(region.fd).st_size == SIZE


@pytest.mark.parametrize("mode", ["ignore", "strict"])
def test_target_that_does_not_answer_keeps_working(mode, region):
    t = covtarget(mode)
    t.coverage = region
    try:
        assert t.parse(plain_packet()).unsupported
        assert not region.negotiated and "coverage" not in t.hello
        assert region.nonzero() == 0
    finally:
        t.close()


def test_no_region_no_offer():
    """Without a region (check, replay, --coverage harness) hello is exactly v1's."""
    t = covtarget("take")
    try:
        assert t.parse(plain_packet()).unsupported
        assert "coverage" not in t.hello
    finally:
        t.close()


def test_target_that_answers_gets_the_region(region):
    t = covtarget("take")
    t.coverage = region
    try:
        for _ in range(5):
            assert t.parse(plain_packet()).unsupported
        assert region.negotiated and t.hello["coverage"] == CHANNEL
        assert region.nonzero() == 5
        region.sample()
        assert region.seen() == 5
    finally:
        t.close()


def test_a_channel_not_offered_is_an_error(region):
    t = covtarget("wrong")
    t.coverage = region
    with pytest.raises(TargetError, match="not offered"):
        t.parse(plain_packet())
    t.close()


@pytest.mark.parametrize("standby", [False, True])
def test_restarts_keep_the_region(region, standby):
    t = covtarget("take", standby=standby)
    t.coverage = region
    ino = os.fstat(region.fd).st_ino
    try:
        t.parse(plain_packet())
        pids = {t.proc.pid}
        assert t.hello["ino"] == ino
        for _ in range(3):
            assert t.parse(crash_case()).faulted
            assert t.parse(plain_packet()).unsupported
            pids.add(t.proc.pid)
            assert region.negotiated and t.hello["ino"] == ino  # the same memfd, passed again
        assert len(pids) == 4 and t.restarts == 3
        assert region.nonzero() > 0
    finally:
        t.close()


def fuzz(*args, timeout=240):
    out = tempfile.mkdtemp(prefix="vsock-cov-")
    try:
        done = subprocess.run([sys.executable, "-m", "vsock_fuzz", "fuzz", "--out", out, "--minimize-time", "0",
                               "--seed", "7", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return done


def test_garbage_in_the_region_does_not_crash_the_harness():
    done = fuzz("--target", f"cmd:{shlex.quote(sys.executable)} {COVTARGET} garbage", "--runs", "400")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "harness error" not in done.stdout and "tcov:" in done.stdout


# The instrumented builds of the C example: `make c-target` makes them; built here when stale.
BUILDS = {"trace-pc": "vsock_target_cov", "trace-pc-guard": "vsock_target_cov_guard"}


def instrumented_c_target(flag: str = "trace-pc") -> str:
    built = C_DIR / BUILDS[flag]
    sources = [C_DIR / "vsock_target.c", C_DIR / "vsock_cov.c"]
    if built.exists() and all(built.stat().st_mtime >= s.stat().st_mtime for s in sources):
        return str(built)
    cc = os.environ.get("CC", "cc") if flag == "trace-pc" else "clang"  # gcc has no trace-pc-guard
    if not shutil.which(cc):
        why = f"no {cc!r}: the C target instrumented with -fsanitize-coverage={flag} cannot be built"
        if os.environ.get("CI"):
            pytest.fail(why + " (.ci/run installs clang)", pytrace=False)
        pytest.skip(why)
    out = Path(tempfile.mkdtemp(prefix="vsock-c-cov-"))
    for cmd in ([cc, "-O2", "-c", "-o", str(out / "vsock_cov.o"), str(sources[1])],
                [cc, "-O2", f"-fsanitize-coverage={flag}", "-o", str(out / built.name), str(sources[0]),
                 str(out / "vsock_cov.o")]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode and "sanitize-coverage" in done.stderr and not os.environ.get("CI"):
            pytest.skip(f"{cc} has no -fsanitize-coverage={flag}")
        assert done.returncode == 0, done.stderr
    return str(out / built.name)


@pytest.mark.parametrize("flag", list(BUILDS))
def test_instrumented_c_target_answers_the_channel(region, flag):
    t = CommandTarget([instrumented_c_target(flag)])
    t.coverage = region
    try:
        assert not t.parse(plain_packet()).faulted
        assert region.negotiated and region.nonzero() > 10
    finally:
        t.close()


@pytest.mark.parametrize("flag", list(BUILDS))
def test_a_cases_counters_are_the_devices_for_that_case(region, flag):
    """The example brackets its device with vsock_cov_device(): request reading is not
    counted, and each case starts a fresh edge chain, so a case's counters do not depend on
    the case before it or on how its request was encoded."""
    t = CommandTarget([instrumented_c_target(flag)])
    t.coverage = region
    other = assemble(linux_tx("6.17", 40000))
    try:
        counts = []
        for before in (plain_packet(), other, crash_case()):
            t.parse(before)
            region.clear()
            assert not t.parse(plain_packet()).faulted
            counts.append(bytes(region.map))
        assert counts[0] == counts[1] == counts[2]
        assert 10 < region.nonzero() < 150  # the device's edges for one packet (232 counting its transport)
    finally:
        t.close()


@pytest.mark.parametrize("coverage", [None, "target", "both"])
def test_campaign_against_the_instrumented_c_target(coverage, tmp_path):
    args = ["--target", f"cmd:{instrumented_c_target()}", "--runs", "1500", "--json", str(tmp_path / "r.json")]
    done = fuzz(*args, *(["--coverage", coverage] if coverage else []))
    assert done.returncode == 0, done.stdout + done.stderr
    # without --coverage: the target's edges alone, as they took the channel
    assert json.loads((tmp_path / "r.json").read_text())["target"]["guided_by"] == (coverage or "target")
    done_line = next(ln for ln in done.stdout.splitlines() if "DONE" in ln)
    tcov = int(done_line.split("tcov: ")[1].split()[0])
    assert tcov > 20  # the target's own edges, non-zero counters seen
    assert "the target's own edges" in done.stdout


def test_coverage_target_needs_a_target_that_offers_it():
    done = fuzz("--target", f"cmd:{shlex.quote(sys.executable)} {COVTARGET} ignore", "--runs", "50",
                "--coverage", "target")
    assert done.returncode == 2
    assert "does not offer the coverage channel" in done.stdout + done.stderr


def test_plain_target_is_guided_by_the_harness(tmp_path):
    done = fuzz("--target", f"cmd:{shlex.quote(sys.executable)} {COVTARGET} ignore", "--runs", "50",
                "--json", str(tmp_path / "r.json"))
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["target"]["guided_by"] == "harness", done.stdout + done.stderr
    assert "target_coverage" not in rep["stats"]


def test_coverage_harness_offers_nothing():
    done = fuzz("--target", f"cmd:{instrumented_c_target()}", "--runs", "200", "--coverage", "harness")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tcov" not in done.stdout
