"""Options every subcommand that opens a target shares, and their parsing."""

import argparse

_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def add_target_options(p, target_required: bool = True) -> None:
    """How a command runs a target and judges it: --target, --profile, --strict, and
    the cmd: target limits (--timeout, --start-timeout, --max-restarts, --rlimit-as,
    --rlimit-cpu, --transport). Read them back with target_options(args)."""
    from ..model.packet import PROFILES
    from ..targets import MAX_RESTARTS, START_TIMEOUT
    p.add_argument("--target", required=target_required, metavar="SPEC",
                   help="reference[:PROFILE], py:module:callable or cmd:COMMAND LINE")
    p.add_argument("--profile", choices=PROFILES, default="spec",
                   help="model profile the answers are held to (default: spec)")
    p.add_argument("--strict", action="store_true", help="disagreeing with the model is an error, not a warning")
    p.add_argument("--timeout", type=_positive_float, default=2.0, metavar="S",
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
    # The device a target wraps, for one that cannot say it in hello (docs/protocol.md); wins over hello.
    g = p.add_argument_group("the device (default: what the target declares in hello, else every feature "
                             "offered and no fixed limit)")
    g.add_argument("--device", type=_device_file, default=None, metavar="FILE.json",
                   help="a JSON file holding the hello `device` object")
    g.add_argument("--device-features", type=_features, default=None, metavar="NAMES",
                   help="the feature bits the device offers, comma-separated (e.g. VIRTIO_F_VERSION_1,"
                        "VIRTIO_F_INDIRECT_DESC); an empty string: none")
    g.add_argument("--max-data-size", type=_positive_int, default=None, metavar="N",
                   help="the device's own fixed payload limit: sent in every case, hdr.len judged against it")
    g.add_argument("--max-queue-size", type=_positive_int, default=None, metavar="N",
                   help="the largest queue size its transport accepts (larger ones are expected refusals)")
    g.add_argument("--max-region-size", type=_size, default=None, metavar="BYTES",
                   help="the largest memory region its adapter can map (no larger memory is built)")
    g.add_argument("--max-regions", type=_positive_int, default=None, metavar="N",
                   help="the most memory regions its adapter can map")


def target_options(args) -> dict:
    """open_target's keyword arguments from the options add_target_options added."""
    from ..targets import FAST_MODES
    return {"timeout": args.timeout, "start_timeout": args.start_timeout, "max_restarts": args.max_restarts,
            "rlimit_as": args.rlimit_as, "rlimit_cpu": args.rlimit_cpu,
            "modes": FAST_MODES if args.transport == "auto" else (), "device": device_options(args)}


def device_options(args) -> dict | None:
    """open_target's `device` from the --device options (None: the command line says nothing)."""
    given = {"description": args.device[1] if args.device else None,
             "source": args.device[0] if args.device else None,
             "features": args.device_features, "max_data_size": args.max_data_size,
             "max_queue_size": args.max_queue_size, "max_region_size": args.max_region_size,
             "max_regions": args.max_regions}
    return given if any(v is not None for v in given.values()) else None


def _device_file(path: str):
    """(path, the JSON object) of a --device file, checked as hello's `device` object is."""
    import json
    from ..model.device import Device
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        Device.from_json(obj, path)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:  # DeviceError and a JSON syntax error alike
        raise argparse.ArgumentTypeError(f"{path}: {e}") from None
    return path, obj


def _features(text: str) -> str:
    """--device-features checked here, so an unknown name is a usage error; kept as text (JSON-able)."""
    from ..model.device import DeviceError, parse_features
    try:
        parse_features(text, "--device-features")
    except DeviceError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--device-features: ")) from None
    return text


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
    if not 0 < v < float("inf"):
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


# --- options several subcommands share ----------------------------------------------------

SEVERITIES = ("critical", "error", "warning")


def add_fail_on(p, default: str | None = "error", what: str = "(default: error)") -> None:
    """--fail-on SEVERITY: the lowest finding severity that makes the exit status 1."""
    p.add_argument("--fail-on", choices=SEVERITIES, default=default,
                   help=f"lowest finding severity that makes the exit status 1 {what}")


def add_accept(p) -> None:
    """--accept FILE and --write-accept FILE (oracles.accepted): departures a device keeps on purpose."""
    p.add_argument("--accept", type=_accept_file, default={}, metavar="FILE",
                   help="root causes to list as accepted, not fail on: a JSON file of keys with the reason "
                        "each is accepted, as --write-accept writes it")
    p.add_argument("--write-accept", default=None, metavar="FILE",
                   help="write the root causes at or above --fail-on (and those already accepted) to FILE, "
                        "for --accept; edit each reason")


def _accept_file(path: str) -> dict:
    from ..oracles.accepted import AcceptError, load
    try:
        return load(path)
    except AcceptError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_verbosity(p, quiet: str, verbose: str) -> None:
    """-q/--quiet and -v/--verbose, with what each leaves out or adds for this subcommand."""
    p.add_argument("-q", "--quiet", action="store_true", help=quiet)
    p.add_argument("-v", "--verbose", action="store_true", help=verbose)


def regex(text: str) -> str:
    """A regular expression, checked here so a bad one is a usage error."""
    import re
    try:
        re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular expression: {e}") from None
    return text


def seconds(text: str) -> float:
    """Seconds, > 0."""
    return _positive_float(text)


def seconds_or_zero(text: str) -> float:
    """Seconds, >= 0 (0: none)."""
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return v


def positive_int(text: str) -> int:
    return _positive_int(text)


def count(text: str) -> int:
    return _count(text)


# libFuzzer's flags (as the harnesses in harnesses/ take them) and vsock-fuzz's options for them.
LIBFUZZER_FLAGS = {
    "max_total_time": "--max-time S", "runs": "--runs N", "jobs": "--jobs N", "workers": "--jobs N",
    "fork": "--jobs N", "dict": "--dict FILE", "seed": "--seed N", "timeout": "--timeout S",
    "rss_limit_mb": "--rlimit-as BYTES (e.g. 2048M)", "malloc_limit_mb": "--rlimit-as BYTES",
    "artifact_prefix": "--out DIR", "exact_artifact_path": "--out DIR", "verbosity": "-v or -q",
    "minimize_crash": "vsock-fuzz minimize CASE", "help": "--help",
}


def libfuzzer_hint(token: str, command: str) -> str | None:
    """The message for a libFuzzer-style flag (`-max_total_time=10`), None for any other token."""
    import re
    m = re.fullmatch(r"-([a-z][a-z0-9_]*)(?:=(.*))?", token, re.S)
    if not m or not (m[2] is not None or "_" in m[1] or m[1] in LIBFUZZER_FLAGS):
        return None
    name, value = m[1], m[2]
    ours = LIBFUZZER_FLAGS.get(name)
    if ours and value is not None and ours.startswith("--") and " " in ours:
        ours = f"{ours.split(' ', 1)[0]} {value}"
    say = (f"its vsock-fuzz equivalent is {ours}" if ours else
           "vsock-fuzz's own options are --max-time, --runs, --jobs, --dict, --seed, --timeout and --out")
    return (f"{token} is a libFuzzer flag, not an option of vsock-fuzz {command}: {say}; "
            f"the harnesses in harnesses/ take libFuzzer flags directly "
            f"(VSOCK_FUZZ_TARGET=SPEC python harnesses/fuzz_target.py {token} CORPUS)")
