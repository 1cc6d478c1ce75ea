#!/usr/bin/env python3
"""atheris/libFuzzer harness: the split-virtqueue chain walk alone (spec 2.7). It must end with
the chain or a ChainError, after work bounded by the queue size, and never pass 2^32 bytes.

    python harnesses/fuzz_chain.py -runs=100000 -dict=corpus/vsock.dict corpus/chain
"""
import sys

import atheris

from vsock_fuzz.engines.percase import uninstrumented  # stdlib only: the package stays to instrument

with atheris.instrument_imports(include=["vsock_fuzz"], exclude=uninstrumented()):
    from vsock_fuzz.engines.percase import chain_one_input
    TestOneInput = chain_one_input()

if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
