"""The example C target (examples/c-target/vsock_target.c) is an independent
implementation of the spec profile: its answers must equal the model's (and
so `vsock-fuzz serve`'s) on the Linux driver layouts (facts file, "What real
guest drivers put on the queues") and on thousands of random binary cases,
over protocol v1 and over frames-v1."""

import json
import os
import random
import shutil
import struct
import subprocess

import pytest

from native import SOURCE, c_target
from vsock_fuzz.case import binary
from vsock_fuzz.case.value import Case, Region, Ring, Write
from vsock_fuzz.case.layout import LINUX_VERSIONS, Buf, Layout, assemble, linux_rx, linux_tx
from vsock_fuzz.model.packet import parse
from vsock_fuzz.targets import CommandTarget
from vsock_fuzz.case.binary import encode

U64_MAX = (1 << 64) - 1


def linux_cases():
    out = []
    for v in LINUX_VERSIONS:
        for indirect in (False, True):
            out += [assemble(linux_tx(v, n, indirect=indirect)) for n in (0, 5, 4096, 40000, 65536)]
            out.append(assemble(linux_rx(v, indirect=indirect)))
    return out


def random_cases(n: int, seed: int = 6):
    """Random byte strings, and Linux seeds with bytes flipped (mostly accepted or near it)."""
    rnd = random.Random(seed)
    seeds = [binary.encode_layout(linux_tx(v, p)) for v in LINUX_VERSIONS for p in (0, 5, 300)]
    seeds += [binary.encode_layout(linux_rx(v)) for v in LINUX_VERSIONS]
    out = []
    for i in range(n):
        if i % 2:
            data = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randrange(1, 4)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        else:
            data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(2, 80)))
        out.append(binary.decode(bytes(data)))
    return out


def edge_cases():
    """Integers up to 2^64-1, a 2^40-byte region, regions ending at 2^64, adjacent regions."""
    big = assemble(Layout("tx", (Buf(44), Buf(100)), regions=(Region(0, 1 << 40),)))
    top = Region((1 << 64) - (1 << 20), 1 << 20)
    at_top = assemble(Layout("rx", (Buf(44 + 4096, 2),), regions=(top,)))
    split = assemble(Layout("tx", (Buf(4000), Buf(3000)), regions=(Region(0, 0x2010), Region(0x2010, 1 << 20)),
                            max_data_size=U64_MAX))
    wrap = assemble(Layout("tx", (Buf(44, addr=U64_MAX - 10), Buf(8)), regions=(top,)))
    return [big, at_top, split, wrap, big._replace(max_data_size=U64_MAX),
            Case("tx", U64_MAX, (Region(0, 4096),), (), Ring(U64_MAX, 0, 0, 0, U64_MAX))]


def comparable(a):
    return (a.ok, a.header, a.header_slices, a.data_slices, a.error)


@pytest.fixture(scope="module")
def cases():
    return linux_cases() + edge_cases() + random_cases(3000)


@pytest.mark.parametrize("modes", [(), ("frames-v1",)], ids=["v1", "frames-v1"])
def test_c_target_answers_like_the_model(cases, modes):
    t = CommandTarget([c_target()], modes=modes)
    answers = t.parse_many(cases)
    assert t.mode == (modes[0] if modes else "v1")
    assert t.name == "vsock_target.c (spec)"
    diffs = [(c, m, a) for c, a in zip(cases, answers) if comparable(a) != comparable(m := parse(c))]
    assert not diffs, f"{len(diffs)} differences, first: {diffs[0]}"
    # The comparison means something: accepted cases of both queues and many error names.
    assert sum(a.ok and a.header is not None for a in answers) > 100
    assert sum(a.ok and a.header is None for a in answers) > 50
    assert len({a.error for a in answers if not a.ok}) >= 10
    t.close()


def test_linux_layouts_are_accepted_by_the_c_target():
    t = CommandTarget([c_target()])
    answers = t.parse_many(linux_cases())
    assert all(a.ok for a in answers), [a for a in answers if not a.ok]
    t.close()


def run_lines(lines: list[str]) -> list[dict]:
    done = subprocess.run([c_target()], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_malformed_requests_get_bad_request_and_the_target_goes_on():
    good = json.dumps(linux_cases()[1].to_request(9))
    req = linux_cases()[1].to_request(5)
    overlap = dict(req, memory=[{"gpa": 0, "size": 8192}, {"gpa": 4096, "size": 8192}])
    too_big = json.dumps(req).replace('"max_data_size": 65536', '"max_data_size": 18446744073709551616')
    fraction = json.dumps(req).replace('"max_data_size": 65536', '"max_data_size": 1.5')
    outside = dict(req, writes=[{"gpa": 1 << 30, "hex": "00"}])
    lines = ["{not json", "[1, 2]", json.dumps({"id": 3, "op": "parse"}), json.dumps(overlap), too_big, fraction,
             json.dumps(outside), json.dumps({"id": 4, "op": "dance"}), "", good]
    out = run_lines(lines)
    assert [o.get("error") for o in out[:-1]] == ["BadRequest"] * 8
    assert out[-1]["id"] == 9 and out[-1]["ok"] is True
    assert out[2]["id"] == 3 and out[7]["id"] == 4  # the id is echoed on a rejection too


def test_hello_offers_frames_only_when_asked():
    out = run_lines(['{"op": "hello", "protocol": 1}'])
    assert out == [{"ok": True, "protocol": 1, "name": "vsock_target.c (spec)", "version": "1"}]
    out = run_lines(['{"op": "hello", "protocol": 1, "modes": ["batch-v9", "frames-v1"]}'])
    assert out[0]["mode"] == "frames-v1"


def test_integers_up_to_2_64_minus_1_round_trip():
    case = Case("tx", U64_MAX, (Region(U64_MAX - 4095, 4096),), (Write(U64_MAX - 4095, b"\x01"),),
                Ring(1, U64_MAX - 4095, U64_MAX - 4095 + 16, U64_MAX - 4095 + 32, 0))
    out = run_lines([json.dumps(case.to_request(U64_MAX))])
    assert out[0]["id"] == U64_MAX
    assert (out[0]["ok"], out[0].get("error")) == (False, parse(case).error)


def test_c_target_survives_mutated_json_and_frames_under_sanitizers(tmp_path):
    """Mutated request lines and mutated or cut frames: answers, never a memory error (ASan, UBSan)."""
    c_target()  # skips without a compiler
    cc = os.environ.get("CC", "cc")
    exe = tmp_path / "vsock_target_asan"
    build = subprocess.run([shutil.which(cc) or cc, "-O1", "-g", "-fsanitize=address,undefined",
                            "-fno-sanitize-recover=all", "-o", str(exe), str(SOURCE)], capture_output=True, text=True)
    if build.returncode:
        pytest.skip(f"{cc} cannot build with -fsanitize=address,undefined: {build.stderr[:200]}")
    rnd = random.Random(11)
    base = linux_cases() + edge_cases() + random_cases(300, seed=12)
    lines = []
    for case in base:
        text = bytearray(json.dumps(case.to_request(1)).encode())
        for _ in range(rnd.randrange(1, 5)):
            text[rnd.randrange(len(text))] = rnd.choice(b'{}[]",:0123456789 \\x')
        lines.append(bytes(text).replace(b"\n", b" "))
    v1 = subprocess.run([str(exe)], input=b"\n".join(lines) + b"\n", capture_output=True, timeout=60)
    assert v1.returncode == 0 and not v1.stderr, v1.stderr[-2000:]
    assert len(v1.stdout.splitlines()) == len(lines)  # one answer per line, garbage or not
    frames = [b'{"op":"hello","protocol":1,"modes":["frames-v1"]}\n']
    for i, case in enumerate(base):
        raw = bytearray(encode(case))
        for _ in range(rnd.randrange(1, 6)):
            raw[rnd.randrange(len(raw))] = rnd.randrange(256)
        raw = raw[:rnd.randrange(2, len(raw) + 1)]
        frames.append(struct.pack("<II", 4 + len(raw), i) + bytes(raw))
    fr = subprocess.run([str(exe)], input=b"".join(frames), capture_output=True, timeout=60)
    assert fr.returncode == 0 and not fr.stderr, fr.stderr[-2000:]
