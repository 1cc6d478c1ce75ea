"""Subcommands of `vsock-fuzz`; see cli.py."""


def add_target_options(p) -> None:
    """--target, --profile, --strict, --timeout: how a command runs a target and judges it."""
    from ..packet import PROFILES
    p.add_argument("--target", required=True, metavar="SPEC",
                   help="reference[:PROFILE], py:module:callable or cmd:COMMAND LINE")
    p.add_argument("--profile", choices=PROFILES, default="spec",
                   help="model profile the answers are held to (default: spec)")
    p.add_argument("--strict", action="store_true", help="disagreeing with the model is an error, not a warning")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S",
                   help="seconds a cmd: target may take per case before it has hung (default: 2)")
