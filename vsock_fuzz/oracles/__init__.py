"""Oracles: invariants over (case, answer) that any correct device keeps."""

from ._all import (FAMILIES, ORACLES, SEVERITY_ORDER, Finding, check, coalesce, evaluate, linux_layout, normalise,
                   worst)

__all__ = ["FAMILIES", "ORACLES", "SEVERITY_ORDER", "Finding", "check", "coalesce", "evaluate", "linux_layout",
           "normalise", "worst"]
