"""Kept so `from vsock_fuzz.layout import ...` (the README's examples) goes on working:
the module is vsock_fuzz.case.layout."""

from .case.layout import *  # noqa: F401,F403
