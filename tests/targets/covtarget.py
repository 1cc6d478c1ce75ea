"""A protocol v1 target for the coverage channel tests (tests/test_target_coverage.py).

    covtarget.py MODE    # MODE: ignore | strict | take | garbage | wrong

ignore: a v1 target that ignores the `coverage` key; strict: one that refuses unknown keys
in hello; take: answers `"coverage": "shm-8bit-v1"` and marks one counter per case (and its
region's inode in hello, `ino`); garbage: takes the channel, then fills the region with random
bytes on every case and tries to shrink and grow it; wrong: answers a channel not offered.
Every parse is answered Unsupported (no oracle judges it); a case with max_data_size 666 crashes
the target."""

import json
import mmap
import os
import random
import sys

mode = sys.argv[1]
fd = os.environ.get("VSOCK_FUZZ_COV_FD")
size = int(os.environ.get("VSOCK_FUZZ_COV_SIZE", "0"))
region = mmap.mmap(int(fd), size) if fd is not None and mode in ("take", "garbage") else None
rng = random.Random(os.getpid())
n = 0
for line in sys.stdin:
    req = json.loads(line)
    if req.get("op") == "hello":
        if mode == "strict" and set(req) - {"op", "protocol"}:
            print(json.dumps({"ok": False, "error": "BadRequest", "detail": "unknown key"}), flush=True)
            continue
        ans = {"ok": True, "protocol": 1, "name": f"covtarget {mode}", "version": "1"}
        if mode == "wrong":
            ans["coverage"] = "shm-16bit-v9"
        elif region is not None and "shm-8bit-v1" in req.get("coverage", []):
            ans["coverage"] = "shm-8bit-v1"
            ans["ino"] = os.fstat(int(fd)).st_ino
        print(json.dumps(ans), flush=True)
        continue
    if req.get("max_data_size") == 666:
        os._exit(3)
    n += 1
    if region is not None and mode == "take":
        region[(n * 7) % size] = 1
    elif region is not None:
        region[:] = rng.randbytes(size)
        for length in (0, size // 2, size * 4):
            try:
                os.ftruncate(int(fd), length)
            except OSError:
                pass
    print(json.dumps({"id": req["id"], "ok": False, "error": "Unsupported", "detail": "covtarget"}), flush=True)
