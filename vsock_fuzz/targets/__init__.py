"""Targets: one interface, `answer = target.parse(case)` (see spec.py's docstring for the specs).

base: TargetError, the defaults, the in-process targets; command: the cmd: target, built on
process (its process) and transport (v1 lines and frames-v1, frames.py); spec: open_target;
serve: a parse function served as a cmd: target.
"""

from .base import DEFAULT_TIMEOUT, FAST_MODES, MAX_RESTARTS, PROTOCOL, START_TIMEOUT, ModelTarget, PythonTarget, TargetError
from .command import CommandTarget
from .spec import open_target

__all__ = ["DEFAULT_TIMEOUT", "FAST_MODES", "MAX_RESTARTS", "PROTOCOL", "START_TIMEOUT", "CommandTarget",
           "ModelTarget", "PythonTarget", "TargetError", "open_target"]
