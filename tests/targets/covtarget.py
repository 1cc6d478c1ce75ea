"""A protocol v1 target for the coverage channel tests (tests/test_target_coverage.py).

    covtarget.py MODE    # MODE: ignore | strict | take | garbage | wrong | compares | cmpgarbage

ignore: a v1 target that ignores the `coverage` key; strict: one that refuses unknown keys
in hello; take: answers `"coverage": "shm-8bit-v1"` (a target of before shm-8bit-v2, which
it never takes) and marks one counter per case (and its region's inode in hello, `ino`);
garbage: takes the channel, then fills the region with random bytes on every case and tries
to shrink and grow it; wrong: answers a channel not offered; compares: takes shm-8bit-v2,
marks a counter and records one compare per case, of the case's max_data_size against
0x5EC0DE17 (a 4-byte compare with a constant), as vsock_cov.c lays entries out;
cmpgarbage: takes shm-8bit-v2, marks a counter, and fills the compare table with random bytes, its count
with a huge number. Every parse is answered Unsupported (no oracle judges it); a case with
max_data_size 666 crashes the target."""

import json
import mmap
import os
import random
import struct
import sys

mode = sys.argv[1]
fd = os.environ.get("VSOCK_FUZZ_COV_FD")
size = int(os.environ.get("VSOCK_FUZZ_COV_SIZE", "0"))
slots = int(os.environ.get("VSOCK_FUZZ_COV_CMP_SLOTS", "0"))
compares = mode in ("compares", "cmpgarbage")
whole = size + (16 + 24 * slots if compares and slots else 0)
region = mmap.mmap(int(fd), whole) if fd is not None and mode in ("take", "garbage") + ("compares", "cmpgarbage") \
    else None
rng = random.Random(os.getpid())
n = 0
for line in sys.stdin:
    req = json.loads(line)
    if req.get("op") == "hello":
        if mode == "strict" and set(req) - {"op", "protocol"}:
            print(json.dumps({"ok": False, "error": "BadRequest", "detail": "unknown key"}), flush=True)
            continue
        ans = {"ok": True, "protocol": 1, "name": f"covtarget {mode}", "version": "1"}
        offered = req.get("coverage", [])
        if mode == "wrong":
            ans["coverage"] = "shm-16bit-v9"
        elif region is not None and compares and slots and "shm-8bit-v2" in offered:
            ans["coverage"] = "shm-8bit-v2"
        elif region is not None and not compares and "shm-8bit-v1" in offered:
            ans["coverage"] = "shm-8bit-v1"
            ans["ino"] = os.fstat(int(fd)).st_ino
        print(json.dumps(ans), flush=True)
        continue
    if req.get("max_data_size") == 666:
        os._exit(3)
    n += 1
    if region is not None and mode in ("take", "compares", "cmpgarbage"):  # some coverage: libFuzzer quits without
        region[(n * 7) % size] = 1
    if region is not None and mode == "compares":
        written, = struct.unpack_from("<Q", region, size)
        struct.pack_into("<BB6xQQ", region, size + 16 + 24 * (written % slots), 4, 1, 0x5EC0DE17,
                         req["max_data_size"] & 0xFFFFFFFF)
        struct.pack_into("<Q", region, size, written + 1)
    elif region is not None and mode == "cmpgarbage":
        region[size:] = rng.randbytes(whole - size)
        struct.pack_into("<Q", region, size, rng.choice((2**64 - 1, 2**63 + 5, slots * 1000 + 3)))
    elif region is not None and mode == "garbage":
        region[:] = rng.randbytes(size)
        for length in (0, size // 2, size * 4):
            try:
                os.ftruncate(int(fd), length)
            except OSError:
                pass
    print(json.dumps({"id": req["id"], "ok": False, "error": "Unsupported", "detail": "covtarget"}), flush=True)
