#!/usr/bin/env python3
"""atheris/libFuzzer harness: TX packets (binary cases forced onto the tx queue) through the
reference model and every oracle; a finding raises an exception naming the oracle.

    python harnesses/fuzz_tx.py -runs=100000 -dict=corpus/vsock.dict corpus/tx
"""
import sys

import atheris

from vsock_fuzz.engines.percase import uninstrumented  # stdlib only: the package stays to instrument

with atheris.instrument_imports(include=["vsock_fuzz"], exclude=uninstrumented()):
    from vsock_fuzz.engines.percase import one_input
    TestOneInput = one_input("reference", queue="tx")

if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
