"""`vsock-fuzz show CASE...`: a case in readable form (see vsock_fuzz/show.py)."""

from __future__ import annotations

import sys

from . import EXIT_CLEAN, EXIT_ERROR

HELP = "print a case (binary, JSON or finding) readably: regions, chain walk, header, bytes, model answers"


def add_arguments(p) -> None:
    p.add_argument("cases", nargs="+", metavar="CASE", help="case files")


def run(args) -> int:
    from ..case.corpus import CorpusError, read_case
    from .render import render

    status = EXIT_CLEAN
    for i, path in enumerate(args.cases):
        try:
            entry = read_case(path)
        except CorpusError as e:
            print(f"vsock-fuzz show: {e}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        if len(args.cases) > 1:
            print(f"{'' if i == 0 else chr(10)}== {path} ({entry.kind})")
        sys.stdout.write(render(entry.case, entry.finding))
    return status
