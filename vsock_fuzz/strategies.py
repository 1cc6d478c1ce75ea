"""Kept so `from vsock_fuzz.strategies import ...` (the README's examples) goes on working:
the module is vsock_fuzz.engines.strategies."""

from .engines.strategies import *  # noqa: F401,F403
