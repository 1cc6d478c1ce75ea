"""Whether a pair handed to libFuzzer's compare tables changes what it tries
(tests/test_target_coverage.py). Not a target: a libFuzzer run of its own.

    cmpfeed.py feed|nofeed RUNS SEED

Every input is first scanned for a 4-byte magic value; `feed` then records, as a target's
compare table would, the compare of the input's first 4 bytes with that value, and hands it
to libFuzzer through CompareHints.feed(); `nofeed` records nothing. Prints `HIT n` when an
input holding the magic value is run (n inputs in), or `MISS` after RUNS inputs. The magic
value is written nowhere else: without the pair, 2^32 values stand between libFuzzer and it.
"""

import os
import struct
import sys

import atheris

from vsock_fuzz.targets.coverage import CHANNEL_CMP, CMP_ENTRY, CMP_HEADER, CompareHints, Region, \
    register_with_libfuzzer

mode, runs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
MAGIC = 0x5EC0DE17
region = Region(1 << 12, slots=8)
region.settle(CHANNEL_CMP)
hints = CompareHints(region)
seen = [0]


def one(data: bytes) -> None:
    seen[0] += 1
    region.map[len(data) & 0xFFF] = 1  # a feature per length, so that libFuzzer keeps some inputs
    if MAGIC.to_bytes(4, "little") in data:
        print(f"HIT {seen[0]}", flush=True)
        os._exit(0)
    if seen[0] == runs:
        print("MISS", flush=True)
        os._exit(0)
    if mode == "feed":
        at = region.size
        struct.pack_into("<BB6xQQ", region.whole, at + CMP_HEADER, 4, 1, MAGIC,
                         int.from_bytes(data[:4].ljust(4, b"\0"), "little"))
        struct.pack_into("<Q", region.whole, at, 1)
        hints.feed()


atheris.Setup([sys.argv[0], f"-seed={seed}"], one)
register_with_libfuzzer(region)
hints.bind()
atheris.Fuzz()
