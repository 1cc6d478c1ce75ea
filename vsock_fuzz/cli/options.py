"""Options every subcommand that opens a target shares, and their parsing."""

import argparse

_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def add_target_options(p) -> None:
    """How a command runs a target and judges it: --target, --profile, --strict, and
    the cmd: target limits (--timeout, --start-timeout, --max-restarts, --rlimit-as,
    --rlimit-cpu, --transport). Read them back with target_options(args)."""
    from ..model.packet import PROFILES
    from ..targets import MAX_RESTARTS, START_TIMEOUT
    p.add_argument("--target", required=True, metavar="SPEC",
                   help="reference[:PROFILE], py:module:callable or cmd:COMMAND LINE")
    p.add_argument("--profile", choices=PROFILES, default="spec",
                   help="model profile the answers are held to (default: spec)")
    p.add_argument("--strict", action="store_true", help="disagreeing with the model is an error, not a warning")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S",
                   help="seconds a cmd: target may take per case before it has hung (default: 2)")
    p.add_argument("--start-timeout", type=_positive_float, default=START_TIMEOUT, metavar="S",
                   help=f"seconds a cmd: target may take to start and answer hello (default: {START_TIMEOUT:g})")
    p.add_argument("--max-restarts", type=_count, default=MAX_RESTARTS, metavar="N",
                   help=f"give up on a cmd: target after N faults in a row without an answer, unless it "
                        f"still answers a Linux packet; 0: never "
                        f"(default: {MAX_RESTARTS})")
    p.add_argument("--rlimit-as", type=_size, default=None, metavar="BYTES",
                   help="address-space limit of a cmd: target process (suffixes K, M, G; default: none)")
    p.add_argument("--rlimit-cpu", type=_positive_int, default=None, metavar="S",
                   help="CPU seconds a cmd: target process may use over its life (default: no limit)")
    p.add_argument("--transport", choices=("auto", "v1"), default="auto",
                   help="auto: offer the fast transports in hello; v1: plain protocol v1 lines (default: auto)")


def target_options(args) -> dict:
    """open_target's keyword arguments from the options add_target_options added."""
    from ..targets import FAST_MODES
    return {"timeout": args.timeout, "start_timeout": args.start_timeout, "max_restarts": args.max_restarts,
            "rlimit_as": args.rlimit_as, "rlimit_cpu": args.rlimit_cpu,
            "modes": FAST_MODES if args.transport == "auto" else ()}


def open_target_from_args(args, **overrides):
    """The target of --target with the options above; raises TargetError."""
    from ..targets import open_target
    return open_target(args.target, **{**target_options(args), **overrides})


def _size(text: str) -> int:
    """BYTES with an optional K, M or G suffix (powers of 1024)."""
    t = text.strip().upper().removesuffix("B")
    mult = _SUFFIX.get(t[-1:], 1)
    try:
        n = int(t[:-1] if mult > 1 else t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 512M, 2G, 1048576)") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a size must be positive")
    return n * mult


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = 0.0
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return v


def _positive_int(text: str) -> int:
    v = _count(text)
    if v == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return v
