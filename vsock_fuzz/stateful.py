"""Kept so `from vsock_fuzz.stateful import ...` (the README's examples) goes on working:
the module is vsock_fuzz.engines.stateful."""

from .engines.stateful import *  # noqa: F401,F403
