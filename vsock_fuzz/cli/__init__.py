"""The `vsock-fuzz` command line: one module per subcommand in this package.

Exit statuses (every subcommand): 0 clean, 1 findings at or above the
failure threshold, 2 usage error or a target that cannot be used.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Each module defines HELP, add_arguments(parser) and run(args) -> int.
COMMANDS = ("serve", "check", "fuzz", "replay", "minimize", "show", "convert", "seeds")

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vsock-fuzz", description="Fuzz and property-test virtio-vsock packet parsing.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name in COMMANDS:
        mod = importlib.import_module(f"vsock_fuzz.cli.{name}")
        mod.add_arguments(sub.add_parser(name, help=mod.HELP, description=mod.HELP))
        modules[name] = mod
    args = ap.parse_args(argv)
    try:
        return modules[args.command].run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`vsock-fuzz show X | head`): stop quietly, and
        # keep the interpreter's final flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
