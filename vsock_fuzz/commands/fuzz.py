"""`vsock-fuzz fuzz`: a time-boxed, coverage-guided campaign against one target (see engine.py)."""

HELP = "run a time-boxed coverage-guided fuzzing campaign against a target"


def add_arguments(p) -> None:
    p.add_argument("--target", required=True, metavar="SPEC",
                   help="reference[:PROFILE], py:module:callable or cmd:COMMAND LINE")
    p.add_argument("--max-time", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: 60, or no limit with --runs)")
    p.add_argument("--runs", type=int, default=None, metavar="N", help="stop after N cases in total")
    p.add_argument("--engine", choices=("atheris", "hypothesis", "both"), default="atheris",
                   help="atheris: mutate binary cases; hypothesis: atheris drives the Hypothesis strategies; "
                        "both: half the workers each (default: atheris)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes (default: 1)")
    p.add_argument("--out", default="fuzz-out", metavar="DIR", help="where findings go (default: ./fuzz-out)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="libFuzzer seed (default: random)")
    p.add_argument("--profile", choices=("spec", "rust-vmm"), default="spec",
                   help="model profile the answers are compared with (default: spec)")
    p.add_argument("--strict", action="store_true", help="disagreement with the model profile is an error")
    p.add_argument("--fail-on", choices=("critical", "error", "warning"), default="error",
                   help="lowest severity that makes the exit status 1 (default: error)")
    p.add_argument("--corpus", nargs="+", default=[], metavar="DIR", help="seed corpus directories (binary cases)")
    p.add_argument("--dict", default=None, metavar="FILE", help="libFuzzer dictionary for the atheris engine")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S",
                   help="seconds a cmd: target may take per case before it has hung (default: 2)")


def run(args) -> int:
    from ..engine import Options, campaign
    max_time = args.max_time if args.max_time is not None else (None if args.runs else 60.0)
    return campaign(Options(
        target=args.target, max_time=max_time, runs=args.runs, engine=args.engine, jobs=args.jobs,
        out=args.out, seed=args.seed, profile=args.profile, strict=args.strict, fail_on=args.fail_on,
        corpus=args.corpus, timeout=args.timeout, dict=args.dict))
