"""`vsock-fuzz merge OUT IN...`: keep the inputs that add coverage, as libFuzzer's `-merge=1` does.

Every input of the IN directories runs once against the target through the harness (as in a
campaign); those that reach coverage OUT's files do not are copied into OUT, named by their
content. A grown corpus merged into an empty directory keeps its coverage in fewer files.
Findings are not recorded: `fuzz` and `replay` are for those.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from . import EXIT_CLEAN, EXIT_ERROR
from .options import add_target_options, target_options

HELP = "merge corpus directories into OUT, keeping only the inputs that add coverage (libFuzzer's -merge=1)"


def add_arguments(p) -> None:
    p.add_argument("out", metavar="OUT", help="the merged corpus (created if missing; its files are kept)")
    p.add_argument("ins", nargs="+", metavar="IN", help="corpus directories to merge into OUT")
    add_target_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def run(args) -> int:
    def error(msg: str) -> int:
        print(f"vsock-fuzz merge: error: {msg}", file=sys.stderr)
        return EXIT_ERROR

    missing = [d for d in args.ins if not os.path.isdir(d)]
    if missing:
        return error(f"no such directory: {', '.join(missing)}")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        return error(f"cannot create {args.out}: {e.strerror or e}")
    opts = target_options(args)
    why = _probe(args.target, opts)
    if why:
        return error(why)
    given = sum(_count(d) for d in args.ins)
    if given:
        with tempfile.TemporaryDirectory(prefix="vsock-fuzz-merge-") as tmp:
            p = _merge(tmp, args, opts)
        if p.returncode != 0:
            return error(f"libFuzzer's merge failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    if not args.quiet:
        print(f"merged {given} input(s) from {len(args.ins)} folder(s): {args.out} holds {_count(args.out)}")
    return EXIT_CLEAN


def _merge(tmp: str, args, opts: dict) -> subprocess.CompletedProcess:
    config = os.path.join(tmp, "config.json")
    with open(config, "w") as f:
        json.dump({"target": args.target, "profile": args.profile, "strict": args.strict,
                   "target_options": opts}, f)
    # A crashing input is skipped by libFuzzer, its crash file kept out of the caller's folder.
    flags = ["-merge=1", f"-artifact_prefix={tmp}{os.sep}", "-print_final_stats=0",
             f"-timeout={int(max(30, 3 * args.timeout + 25))}", args.out, *args.ins]
    return subprocess.run([sys.executable, "-m", "vsock_fuzz.engines.merge", config, *flags],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, errors="replace")


def _probe(spec: str, opts: dict) -> str | None:
    """Why the target cannot be used (it must answer a plain packet), or None."""
    from ..case.layout import plain_packet
    from ..targets import TargetError, open_target
    try:
        target = open_target(spec, **opts)
        try:
            target.parse(plain_packet())
        finally:
            target.close()
    except TargetError as e:
        return str(e)
    return None


def _count(top: str) -> int:
    return sum(len(files) for _, _, files in os.walk(top))
