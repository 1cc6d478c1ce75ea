"""Kept so `vsock_fuzz.report.new(...)` (the README's API) goes on working:
the module is vsock_fuzz.cli.report."""

from .cli.report import *  # noqa: F401,F403
