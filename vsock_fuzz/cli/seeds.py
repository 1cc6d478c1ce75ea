"""`vsock-fuzz seeds DIR`: write out the seed corpus and dictionary the package ships.

DIR gets `target/` (every seed: what `vsock-fuzz fuzz` starts from when no
--corpus is given), `tx/`, `rx/` and `chain/` (the seeds of the harnesses of
those names) and `vsock.dict` (the libFuzzer dictionary, which `fuzz` uses
when no --dict is given). Files already in DIR are kept unless --force.
"""

from __future__ import annotations

import os
import sys

from . import EXIT_CLEAN, EXIT_ERROR

HELP = "write the packaged seed corpus (target/, tx/, rx/, chain/) and vsock.dict into a directory"


def add_arguments(p) -> None:
    p.add_argument("dir", metavar="DIR", help="where to write them (created if missing)")
    p.add_argument("--force", action="store_true", help="overwrite files of the same name already in DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")


def run(args) -> int:
    from ..engines.seeds import copy_packaged
    try:
        counts = copy_packaged(args.dir, overwrite=args.force)
    except OSError as e:
        print(f"vsock-fuzz seeds: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if not args.quiet:
        for name, n in counts.items():
            if name != "vsock.dict":
                print(f"{os.path.join(args.dir, name)}/: {n} seeds")
        dict_path = os.path.join(args.dir, "vsock.dict")
        print(f"{dict_path}: {'written' if 'vsock.dict' in counts else 'kept (already there; --force to overwrite)'}")
    return EXIT_CLEAN
