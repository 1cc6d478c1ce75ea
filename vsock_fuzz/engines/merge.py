"""`vsock-fuzz merge`'s child process: libFuzzer's `-merge=1` over the harness, instrumented as a worker is.

    python -m vsock_fuzz.engines.merge CONFIG.json -merge=1 OUT IN...

libFuzzer's merge runs the inputs in fresh copies of this process (`-merge_control_file`),
so that an input that kills one is skipped, not fatal: it starts them with the command
line atheris.Setup is given, whose first word is therefore this whole command, not a path.
Findings are not recorded: a merge is about coverage.

Only the standard library and engines.percase at the top, as in engines.worker.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys

from .percase import case_checker, coverage_plan


def merge(config_path: str, flags: list[str]) -> None:
    import atheris
    with open(config_path) as f:
        cfg = json.load(f)
    include, exclude, compiled = coverage_plan(cfg["target"], cfg["profile"])
    with atheris.instrument_imports(include=include, exclude=exclude) if include else contextlib.nullcontext():
        from ..targets import open_target
        from .worker import _offer_coverage
        target = open_target(cfg["target"], **cfg["target_options"])
        region = _offer_coverage(target, None)
        check = case_checker(target, profile=cfg["profile"], strict=cfg["strict"])

    def TestOneInput(data: bytes) -> None:
        check(data)

    again = f"{shlex.quote(sys.executable)} -m vsock_fuzz.engines.merge {shlex.quote(config_path)}"
    atheris.Setup([again, *flags], TestOneInput)
    if region is not None:
        from ..targets.coverage import register_with_libfuzzer
        register_with_libfuzzer(region)
    if compiled:
        from ..targets.coverage import register_core
        register_core()
    atheris.Fuzz()


if __name__ == "__main__":
    merge(sys.argv[1], sys.argv[2:])
