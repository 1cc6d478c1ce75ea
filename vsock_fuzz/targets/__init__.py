"""Targets: one interface, `answer = target.parse(case)` (see command.py's docstring for the specs)."""

from .command import (DEFAULT_TIMEOUT, FAST_MODES, MAX_RESTARTS, PROTOCOL, START_TIMEOUT, CommandTarget,
                      ModelTarget, PythonTarget, TargetError, open_target)

__all__ = ["DEFAULT_TIMEOUT", "FAST_MODES", "MAX_RESTARTS", "PROTOCOL", "START_TIMEOUT", "CommandTarget",
           "ModelTarget", "PythonTarget", "TargetError", "open_target"]
