from ..model.packet import PROFILES

HELP = "serve the reference model over target protocol v1 on stdin/stdout"


def add_arguments(p) -> None:
    p.add_argument("--profile", choices=PROFILES, default="spec", help="model profile (default: spec)")


def run(args) -> int:
    from ..targets.serve import serve
    return serve(profile=args.profile)
