"""The coverage channel shm-8bit-v1 and its shm-8bit-v2 with compare hints
(docs/protocol-extensions.md): negotiated in hello, a memfd region kept across restarts, a
target that writes garbage into it, campaigns that libFuzzer guides with the C target's own
edges, and the device's compares recorded inside the device only, in a bounded table that the
harness reads without trusting it, and handed to libFuzzer so that they change what it tries."""

import json
import os
import re
import shlex
import struct
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vsock_fuzz.case.layout import assemble, linux_tx, plain_packet
from vsock_fuzz.case.wire import FIELD_NAMES
from vsock_fuzz.targets import CommandTarget
from vsock_fuzz.targets.base import TargetError
from vsock_fuzz.case.binary import Reader, decode, decode_layout, encode, header_fields
from vsock_fuzz.targets.coverage import (CHANNEL, CHANNEL_CMP, CMP_ENTRY, CMP_HEADER, CMP_SLOTS, ENV_CMP_SLOTS,
                                         ENV_FD, ENV_SIZE, SIZE, CompareHints, Region, entries, pair, substitute)

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
    assert os.fstat(region.fd).st_size == SIZE + CMP_HEADER + CMP_ENTRY * CMP_SLOTS  # the compare table after


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
    """A target of v1 (edges only) is driven as before though v2 is offered first."""
    t = covtarget("take")
    t.coverage = region
    try:
        for _ in range(5):
            assert t.parse(plain_packet()).unsupported
        assert region.negotiated and t.hello["coverage"] == CHANNEL and not region.compares
        assert region.nonzero() == 5 and region.take_compares() == b""
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
BUILDS = {"trace-pc,trace-cmp": "vsock_target_cov", "trace-pc-guard,trace-cmp": "vsock_target_cov_guard"}


def instrumented_c_target(flag: str = "trace-pc,trace-cmp") -> str:
    built = C_DIR / BUILDS[flag]
    sources = [C_DIR / "vsock_target.c", C_DIR / "vsock_cov.c"]
    if built.exists() and all(built.stat().st_mtime >= s.stat().st_mtime for s in sources):
        return str(built)
    cc = "clang" if "guard" in flag else os.environ.get("CC", "cc")  # gcc has no trace-pc-guard
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
    fed = re.search(r"(\d+) compare pairs of the target's handed to libFuzzer \((\d+) inputs", done.stdout)
    assert fed and int(fed[1]) > 0, done.stdout  # built with trace-cmp: shm-8bit-v2 taken and fed
    stats = json.loads((tmp_path / "r.json").read_text())["stats"]
    assert stats["target_compares_fed"] == int(fed[1]) and stats["target_compares_written"] == int(fed[2])
    assert "the target's own edges" in done.stdout


def test_a_run_shorter_than_a_stats_message_still_reports_the_target_s_coverage(tmp_path):
    # Done before the worker's first stats message (0.25 s in): libFuzzer ends the run with its
    # exit(), and the worker's last words still carry the target's figures.
    done = fuzz("--target", f"cmd:{instrumented_c_target()}", "--runs", "40", "--coverage", "target",
                "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    done_line = next(ln for ln in done.stdout.splitlines() if "DONE" in ln)
    assert int(done_line.split("tcov: ")[1].split()[0]) > 20, done_line
    stats = json.loads((tmp_path / "r.json").read_text())["stats"]
    assert stats["cases"] == int(done_line[1:].split()[0]) and stats["target_compares_fed"] > 0, stats


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


# ---- shm-8bit-v2: the device's compares ------------------------------------------------

def table_entry(size: int, kind: int, a: int, b: int) -> bytes:
    return struct.pack("<BB6xQQ", size, kind, a, b)


def write_table(region: Region, written: int, slots: dict) -> None:
    """What a target leaves in the table: the count, and entries by slot."""
    struct.pack_into("<Q", region.whole, region.size, written)
    for k, e in slots.items():
        at = region.size + CMP_HEADER + CMP_ENTRY * k
        region.whole[at:at + CMP_ENTRY] = e


def test_v2_is_offered_first_and_a_region_without_table_offers_v1(region):
    assert region.offer == (CHANNEL_CMP, CHANNEL)
    assert region.child()["env"][ENV_CMP_SLOTS] == str(CMP_SLOTS)
    assert struct.unpack_from("<I", region.whole, SIZE + 8)[0] == CMP_SLOTS  # the header's slot count
    plain = Region(slots=0)
    try:
        assert plain.offer == (CHANNEL,) and ENV_CMP_SLOTS not in plain.child()["env"]
        assert os.fstat(plain.fd).st_size == SIZE and plain.take_compares() == b""
    finally:
        plain.close()


def test_take_compares_reads_the_most_recent_entries_and_empties_the_table():
    r = Region(1 << 12, slots=4)
    try:
        write_table(r, 3, {k: table_entry(4, 0, k, 100) for k in range(4)})
        assert [e[8] for e in entries(r.take_compares())] == [0, 1, 2]  # entries 0..2, oldest first
        assert r.take_compares() == b""  # the count was set to 0 for the next case
        # 6 written into 4 slots: 4, 5 overwrote slots 0, 1; the oldest kept is slot 2
        write_table(r, 6, {0: table_entry(4, 0, 4, 100), 1: table_entry(4, 0, 5, 100),
                           2: table_entry(4, 0, 2, 100), 3: table_entry(4, 0, 3, 100)})
        assert [e[8] for e in entries(r.take_compares())] == [2, 3, 4, 5]
    finally:
        r.close()


@pytest.mark.parametrize("written", [5, 2**63 + 7, 2**64 - 1])
def test_a_count_the_target_garbled_is_clamped(written):
    """The count is the target's to write: a hostile one cannot make the harness read past the
    table, or more entries than it holds (as screen() bounds what counters cost)."""
    r = Region(1 << 12, slots=4)
    try:
        r.whole[r.size + CMP_HEADER:] = os.urandom(CMP_ENTRY * 4)
        struct.pack_into("<Q", r.whole, r.size, written)
        table = bytes(r.whole[r.size + CMP_HEADER:])
        hints = CompareHints(r)  # the worker's reader: entries read in place
        hints.feed()
        assert hints.recorded == 4 and struct.unpack_from("<Q", r.whole, r.size)[0] == 0
        struct.pack_into("<Q", r.whole, r.size, written)
        got = r.take_compares()
        assert len(got) == CMP_ENTRY * 4
        assert sorted(entries(got)) == sorted(entries(table))
    finally:
        r.close()


def test_pair_keeps_what_libfuzzer_can_use():
    assert pair(table_entry(4, 1, 0x5EC0DE17, 1024)) == (4, 1024, 0x5EC0DE17)  # the constant second
    assert pair(table_entry(8, 0, 2**64 - 1, 3)) == (8, 2**64 - 1, 3)
    assert pair(table_entry(2, 0, 0xFFFF_0000_B00F, 1)) == (2, 0xB00F, 1)  # cut to the size
    assert pair(table_entry(4, 0, 7, 7)) is None  # equal: nothing to write
    assert pair(table_entry(4, 0, 7, 200)) is None  # two byte values: plain mutation's reach
    for garbled in (0, 1, 3, 5, 255):
        assert pair(table_entry(garbled, 0, 0x1234, 0x5678)) is None


def structured_tx_seed() -> bytes:
    seeds = sorted((ROOT / "corpus" / "tx").iterdir())
    return next(d for d in (f.read_bytes() for f in seeds) if header_fields(d) and d[1] == 0)


def header_of(data: bytes):
    return decode_layout(Reader(data, 2), "tx").header


@pytest.mark.parametrize("field, new", [("src_port", 0x5EC0DE17), ("type", 0xB00F), ("op", 0x7A11),
                                        ("flags", 0xF1A6C0DE)])
def test_substitute_writes_the_compared_value_into_the_header_field_that_held_the_other(field, new):
    """Most inputs are in the structured form, whose header fields are varints, some stored
    as value + 1 with 0 for a default (type, op): libFuzzer's own CMP mutation looks for the
    operand as fixed-width bytes and never finds it there."""
    data = structured_tx_seed()
    before = header_of(data)
    old = getattr(before, field)
    size = 2 if field in ("type", "op") else 4
    anywhere = [substitute(data, size, old, new, r) for r in range(0, 64, 4)]  # r & 3 == 0
    in_header = [substitute(data, size, old, new, r) for r in range(1, 64, 4)]
    assert all(h is not None for h in anywhere + in_header)
    for h in in_header:  # one field that held `old` now holds `new`, the others as they were
        after = header_of(h)
        changed = [n for n in FIELD_NAMES if getattr(after, n) != getattr(before, n)]
        assert len(changed) == 1 and getattr(before, changed[0]) == old and getattr(after, changed[0]) == new
    assert any(getattr(header_of(h), field) == new for h in in_header)


def test_substitute_in_the_raw_form_and_where_nothing_holds_the_operand():
    """The raw form holds the header as the bytes of guest memory: the operand is found as
    little-endian bytes of its size and replaced in place."""
    case = decode(structured_tx_seed())
    raw = encode(case)
    port = case_header(case).src_port
    outs = [substitute(raw, 4, port, 0x5EC0DE17, r) for r in range(16)]
    assert all(o is not None for o in outs)
    headers = [case_header(decode(o)) for o in outs]
    assert any(h is not None and h.src_port == 0x5EC0DE17 for h in headers)
    assert all(substitute(raw, 4, 0xDEADBEEF, 0x12345678, r) is None for r in range(8))


def case_header(case):
    from vsock_fuzz.model.packet import parse
    return parse(case).header


def test_compares_a_target_records_reach_the_harness_once(region):
    t = covtarget("compares")
    t.coverage = region
    try:
        t.parse(plain_packet()._replace(max_data_size=4096))
        assert t.hello["coverage"] == CHANNEL_CMP and region.compares
        assert [pair(e) for e in entries(region.take_compares())] == [(4, 4096, 0x5EC0DE17)]
        assert region.take_compares() == b""
    finally:
        t.close()


def test_a_garbled_compare_table_does_not_crash_the_harness():
    done = fuzz("--target", f"cmd:{shlex.quote(sys.executable)} {COVTARGET} cmpgarbage", "--runs", "400")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "harness error" not in done.stdout and "compare pairs of the target's" in done.stdout


@pytest.mark.parametrize("flag", list(BUILDS))
def test_c_target_records_its_devices_compares_only(region, flag):
    """vsock_cov.c records while the device runs (vsock_cov_device brackets it): not the hello
    or request reading, which compare lengths and keys, so one case gives the same compares
    whichever transport carried it and whatever case came before."""
    case = plain_packet()._replace(max_data_size=0x12345)
    tables = []
    for modes in ((), ("frames-v1",)):
        t = CommandTarget([instrumented_c_target(flag)], modes=modes)
        t.coverage = region
        try:
            t.start()
            assert region.compares and region.take_compares() == b""  # hello: nothing recorded
            t.parse(assemble(linux_tx("6.17", 40000)))
            region.take_compares()
            assert t.parse(case).ok
            tables.append(region.take_compares())
        finally:
            t.close()
    assert tables[0] == tables[1] and tables[0]
    # the device's own check of the payload against max_data_size (hdr.len > max_data_size)
    assert any(p and 0x12345 in p[1:] for p in map(pair, entries(tables[0])))


def planted_c_target(flags: str, plant: str) -> str:
    """The C example with `plant` run after its parse, built with -fsanitize-coverage=`flags`
    (none: plain) and vsock_cov.c, in a directory of its own."""
    cc = os.environ.get("CC", "cc")
    out = Path(tempfile.mkdtemp(prefix="vsock-c-plant-"))
    at = "    parse_spec();\n    if (vsock_cov_device)\n"
    source = (C_DIR / "vsock_target.c").read_text()
    assert source.count(at) == 1
    (out / "t.c").write_text(source.replace(at, "    parse_spec();\n" + plant + "    if (vsock_cov_device)\n"))
    subprocess.run([cc, "-O2", "-c", "-o", str(out / "cov.o"), str(C_DIR / "vsock_cov.c")], check=True)
    subprocess.run([cc, "-O2", *([f"-fsanitize-coverage={flags}"] if flags else []), "-o", str(out / "t"),
                    str(out / "t.c"), str(out / "cov.o")], check=True)
    return str(out / "t")


# A crash behind a 32-bit and a 16-bit magic value in header fields, one after the other.
MAGIC_PLANT = """    {
        static volatile int gate;
        uint32_t src_port;
        uint16_t op;
        memcpy(&src_port, ans.header + 16, 4);
        memcpy(&op, ans.header + 30, 2);
        if (ans.ok && ans.has_header && !rq.rx && src_port == 0x5EC0DE17u) {
            gate = 1;
            if (op == 0x7A11u)
                abort();
        }
    }
"""


def test_c_target_without_compare_tracing_is_driven_as_before(region):
    """Built with trace-pc alone, no compare hook ever runs: the runtime answers shm-8bit-v1
    though v2 was offered with a table, counts its edges as before, and leaves the table
    alone, so the worker installs no compare hints for it."""
    t = CommandTarget([planted_c_target("trace-pc", "")])
    t.coverage = region
    try:
        for case in (plain_packet(), assemble(linux_tx("6.17", 40000))):
            assert not t.parse(case).faulted
            assert region.take_compares() == b""
        assert t.hello["coverage"] == CHANNEL and not region.compares and region.nonzero() > 10
    finally:
        t.close()


def test_a_pair_fed_to_libfuzzers_tables_changes_what_it_tries():
    """CompareHints.feed() hands a recorded compare to libFuzzer through the functions its
    in-process instrumentation calls, from one ctypes call site: its CMP mutation then writes
    the compared value, which no other mutation reaches (a 32-bit value, in no dictionary)."""
    script = Path(__file__).parent / "targets" / "cmpfeed.py"
    got = {}
    for mode in ("feed", "nofeed"):
        done = subprocess.run([sys.executable, str(script), mode, "30000", "3"], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
        got[mode] = next((ln for ln in done.stdout.splitlines() if ln.startswith(("HIT", "MISS"))), done.stderr[-500:])
    assert got["feed"].startswith("HIT") and got["nofeed"] == "MISS", got


def test_compare_hints_find_a_crash_behind_magic_values_that_edges_alone_miss():
    """The campaign end to end: the same seed and number of cases, the same device built
    with and without compare tracing; only the device's compares lead to the crash. (A
    campaign is not repeatable case for case: libFuzzer rereads its corpus on a clock. The
    compares' build took 10,000 to 40,000 cases; 150,000 leave room.)"""
    found = {}
    for flags in ("trace-pc,trace-cmp", "trace-pc"):
        done = fuzz("--target", f"cmd:{planted_c_target(flags, MAGIC_PLANT)}", "--coverage", "target",
                    "--runs", "150000", "--stop-on", "safety.crash")
        found[flags] = "NEW finding: safety.crash" in done.stdout
        assert "harness error" not in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    assert found == {"trace-pc,trace-cmp": True, "trace-pc": False}


def test_the_crossover_writes_the_last_cases_deciding_compare_into_the_input():
    """crossover(), one of libFuzzer's mutations: the newest pair worth writing (the compare
    that stopped the parse) half the time, written where the input holds its other operand,
    the other input ignored; nothing (libFuzzer then mutates otherwise) when no case recorded
    compares."""
    r = Region(1 << 12, slots=8)
    try:
        hints = CompareHints(r)
        data = structured_tx_seed()
        port = header_of(data).src_port
        assert hints.crossover(data, b"other", 4096, 0) == b""  # nothing recorded yet
        older = {k: table_entry(8, 0, 0x1000 + k, 0x2000) for k in range(5)}
        write_table(r, 7, {**older, 5: table_entry(4, 0, 9, 9), 6: table_entry(4, 1, 0x5EC0DE17, port)})
        hints.feed()
        outs = [o for o in (hints.crossover(data, b"other", 4096, seed) for seed in range(200)) if o]
        # the older pairs' operands are in no input: a few crossovers find nothing to write
        assert len(outs) > 100 and hints.hinted == len(outs)
        assert all(o != data and b"other" not in o for o in outs)
        # src_port and dst_port both hold the port here; a quarter of the writes are one off (for bounds)
        ports = [{header_of(o).src_port, header_of(o).dst_port} for o in outs]
        assert sum(bool(p & {0x5EC0DE16, 0x5EC0DE17, 0x5EC0DE18}) for p in ports) > len(outs) / 2
        assert sum(0x5EC0DE17 in p for p in ports) > len(outs) / 4
    finally:
        r.close()
