#!/usr/bin/env python3
"""atheris/libFuzzer harness: RX buffers (binary cases forced onto the rx queue) through the
reference model and every oracle; a finding raises an exception naming the oracle.

    python harnesses/fuzz_rx.py -runs=100000 -dict=corpus/vsock.dict corpus/rx
"""
import sys

import atheris

from vsock_fuzz.engines.percase import uninstrumented  # stdlib only: the package stays to instrument

with atheris.instrument_imports(include=["vsock_fuzz"], exclude=uninstrumented()):
    from vsock_fuzz.engines.percase import one_input
    TestOneInput = one_input("reference", queue="rx")

if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
