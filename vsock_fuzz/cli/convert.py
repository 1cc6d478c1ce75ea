"""`vsock-fuzz convert IN OUT`: a case between its binary and JSON forms.

The output form follows OUT's extension (`.json` is JSON, anything else the
binary form) unless --to says otherwise; OUT `-` writes to stdout: JSON when
stdout is a terminal, else the binary form (--to bin to a terminal is refused:
redirect it). A finding
file as IN gives its case. Both forms hold the same case exactly.
"""

from __future__ import annotations

import sys

from . import EXIT_CLEAN, EXIT_ERROR
from ..case.binary import encode

HELP = "convert a case between the binary and JSON forms"


def add_arguments(p) -> None:
    p.add_argument("input", metavar="IN", help="case file (binary, JSON or finding)")
    p.add_argument("output", metavar="OUT", help="file to write, or - for stdout")
    p.add_argument("--to", choices=("bin", "json"),
                   help="output form (default: from OUT's extension; for -, JSON to a terminal, else binary)")


def run(args) -> int:
    from ..case.corpus import CorpusError, dumps_case, read_case, write_case

    try:
        entry = read_case(args.input)
    except CorpusError as e:
        print(f"vsock-fuzz convert: {e}", file=sys.stderr)
        return EXIT_ERROR
    form = args.to or ("json" if args.output.endswith(".json") else "bin")
    if args.output == "-":
        tty = sys.stdout.isatty()
        if tty and args.to == "bin":
            print("vsock-fuzz convert: error: not writing the binary form to a terminal; redirect stdout "
                  "(convert IN - --to bin > FILE) or leave out --to bin for JSON", file=sys.stderr)
            return EXIT_ERROR
        form = args.to or ("json" if tty else "bin")
        data = dumps_case(entry.case) if form == "json" else encode(entry.case)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return EXIT_CLEAN
    try:
        write_case(args.output, entry.case, form)
    except OSError as e:
        print(f"vsock-fuzz convert: {args.output}: cannot write: {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{args.input} ({entry.kind}) -> {args.output} ({form})")
    return EXIT_CLEAN
