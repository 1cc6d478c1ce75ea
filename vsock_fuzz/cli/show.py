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
        sys.stdout.write(render(entry.case, _from_here(entry.finding, path)))
    return status


def _from_here(finding: dict | None, path: str) -> dict | None:
    """The finding with its reproduce command naming the file as given here (its `.bin`
    beside it when there is one), so the command works from where show was run."""
    import os
    from ..case.corpus import FINDING_SUFFIX
    from ..oracles.finding import replay_command
    if finding is None:
        return None
    binary = path[:-len(FINDING_SUFFIX)] + ".bin" if path.endswith(FINDING_SUFFIX) else None
    here = binary if binary and os.path.isfile(binary) else path
    return {**finding, "reproduce": replay_command(finding.get("target"), here)}
