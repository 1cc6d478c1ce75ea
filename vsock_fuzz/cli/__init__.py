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
COMMANDS = ("serve", "check", "fuzz", "replay", "minimize", "merge", "show", "convert", "seeds", "init")

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
# The subcommands whose output holds `vsock-fuzz ...` command lines (reproduce, next steps).
PRINTS_COMMANDS = ("fuzz", "check", "replay", "minimize")


def path_hint() -> str | None:
    """One line saying how to run the printed `vsock-fuzz` commands when the name is not on PATH
    (a checkout's .venv not activated, `python -m vsock_fuzz`), None when it is."""
    import shutil
    if shutil.which("vsock-fuzz"):
        return None
    here = os.path.dirname(os.path.abspath(sys.argv[0])) if os.path.basename(sys.argv[0]) == "vsock-fuzz" \
        else os.path.dirname(sys.executable)
    if os.path.exists(os.path.join(here, "vsock-fuzz")):
        how = f"put {here} on PATH (export PATH={here}:$PATH" + (
            f", or . {here}/activate)" if os.path.exists(os.path.join(here, "activate")) else ")")
    else:
        how = f"run them as {sys.executable} -m vsock_fuzz ..."
    return f"note: the commands above start with vsock-fuzz, which is not on PATH here: {how}"


def main(argv: list[str] | None = None) -> int:
    from .. import __version__
    ap = argparse.ArgumentParser(prog="vsock-fuzz", description="Fuzz and property-test virtio-vsock packet parsing.")
    ap.add_argument("--version", action="version", version=f"vsock-fuzz {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules, parsers = {}, {}
    for name in COMMANDS:
        mod = importlib.import_module(f"vsock_fuzz.cli.{name}")
        parsers[name] = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(parsers[name])
        modules[name] = mod
    args = _parse(ap, parsers, sys.argv[1:] if argv is None else [str(a) for a in argv])
    try:
        code = modules[args.command].run(args)
        # After what a run found (fuzz: also its next steps), not after an error's one line.
        if args.command in PRINTS_COMMANDS and argv is None and (code == EXIT_FINDINGS or (
                args.command == "fuzz" and code == EXIT_CLEAN)):
            hint = path_hint()
            if hint:
                print(hint, file=sys.stderr)
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`vsock-fuzz show X | head`): stop quietly, and
        # keep the interpreter's final flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parse(ap, parsers: dict, argv: list[str]):
    """The arguments; a bad one ends the run with the subcommand's usage (exit 2), a libFuzzer
    flag (`-max_total_time=10`) with its vsock-fuzz equivalent."""
    from .options import libfuzzer_hint
    command = next((a for a in argv if a in parsers), None)
    if command is not None:
        for token in argv[argv.index(command) + 1:]:
            if token == "--":
                break
            hint = libfuzzer_hint(token, command)
            if hint:
                parsers[command].error(hint)
    args, extra = ap.parse_known_args(argv)
    if extra:
        parsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


if __name__ == "__main__":
    sys.exit(main())
