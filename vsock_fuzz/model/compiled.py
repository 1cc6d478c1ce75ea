"""The compiled per-case path, `vsock_fuzz_core` (built from core/ with maturin), when installed.

A fuzz case's usual life runs there: the binary case decoded and fitted to the device, the
request encoded, the answer frame decoded, and the answer compared with the spec model's readings
(oracles.run.agrees). Only an answer that differs pays for the Python model and oracles,
which stay the reference: tests/test_core.py holds the core to them on the corpus, the
check matrix and random cases.

Without it (no Rust toolchain where vsock-fuzz was installed) every case takes the Python
path: the same findings, several times slower, said once on stderr. VSOCK_FUZZ_CORE=0 turns
the core off, to measure the Python path or to rule the core out.

Standard library only at the top: a fuzz worker imports this before atheris instruments.
"""

from __future__ import annotations

import os
import sys

_loaded = None   # the module, False when unavailable; None: not looked for yet
_said = False


def load():
    """The core module, or None (not installed, or VSOCK_FUZZ_CORE=0)."""
    global _loaded
    if _loaded is None:
        _loaded = False
        if os.environ.get("VSOCK_FUZZ_CORE", "1") != "0":
            try:
                import vsock_fuzz_core as core
            except ImportError:
                pass
            else:
                from ..case.value import Case, Region, Ring, Write
                from ..case.wire import Header
                from .answer import Answer
                core.bind(Case, Region, Write, Ring, Answer, Header)
                _loaded = core
    return _loaded or None


def say_if_missing() -> None:
    """Say once on stderr that cases run on the Python path, and how to install the core."""
    global _said
    if _said or load() is not None or os.environ.get("VSOCK_FUZZ_CORE") == "0":
        return
    _said = True
    print("vsock-fuzz: the compiled core (vsock-fuzz-core) is not installed, so every case runs on the "
          "pure-Python path (the same findings, several times slower); install it with a Rust toolchain: "
          "pip install ./core from a checkout (README, Install)", file=sys.stderr)

