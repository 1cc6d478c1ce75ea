#!/usr/bin/env python3
"""atheris/libFuzzer harness: any target (reference[:PROFILE], py:module:callable, cmd:...) through
every oracle. The target comes from `--target=SPEC` (removed before libFuzzer sees argv) or
VSOCK_FUZZ_TARGET; VSOCK_FUZZ_PROFILE picks the model profile, VSOCK_FUZZ_FAIL_ON the lowest
severity that stops the run (default error).

    VSOCK_FUZZ_TARGET='cmd:./my-adapter' python harnesses/fuzz_target.py -max_total_time=60 corpus/target
"""
import os
import sys

import atheris

target = os.environ.get("VSOCK_FUZZ_TARGET", "reference")
for arg in [a for a in sys.argv[1:] if a.startswith("--target=")]:
    target = arg.split("=", 1)[1]
    sys.argv.remove(arg)

from vsock_fuzz.engines.percase import instrumented, uninstrumented  # noqa: E402  (stdlib only)

with atheris.instrument_imports(include=instrumented(target), exclude=uninstrumented()):
    from vsock_fuzz.engines.percase import one_input
    TestOneInput = one_input(target, profile=os.environ.get("VSOCK_FUZZ_PROFILE", "spec"),
                             fail_on=os.environ.get("VSOCK_FUZZ_FAIL_ON", "error"))

if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
