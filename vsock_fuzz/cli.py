"""The `vsock-fuzz` command line."""

from __future__ import annotations

import argparse
import sys

from .packet import PROFILES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vsock-fuzz", description="Fuzz and property-test virtio-vsock packet parsing.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve the reference model over target protocol v1 on stdin/stdout")
    p.add_argument("--profile", choices=PROFILES, default="spec")
    args = ap.parse_args(argv)
    if args.command == "serve":
        from .serve import serve
        return serve(args.profile)
    return 2


if __name__ == "__main__":
    sys.exit(main())
