"""Oracles: invariants over (case, answer) that every correct device keeps.

Each oracle is a small named function with the spec rule or real bug it
stands for, in the module of its family. `check` runs them all on one answer
and returns `Finding`s; `evaluate` runs a target (twice, for determinism,
unless it is the stateless model) and the model, then checks (run.py).

Families and severities (ARCHITECTURE.md, issue 3):
  safety (critical)     slices inside guest memory, inside one region, inside
                        the chain's buffers, with the queue's direction; no
                        crash, no hang.
  fidelity (error)      the header is the 44 bytes under header_slices, which
                        are the chain's first 44 bytes; tx data totals hdr.len,
                        follows the header in order, hdr.len <= max_data_size;
                        header and data do not overlap.
  interop (error)       the Linux layouts (< 6.2, 6.2+, 6.17+, each also in an
                        indirect table) are accepted with the right slices.
  conformance (warning) other spec-valid layouts rejected; leniency towards
                        malformed chains; bytes of the chain skipped.
  differential (warning, error when strict)  disagreement with the model.
  determinism (error)   the same case answered twice, the same answer.

finding.py holds `Finding` and the registry, context.py what the oracles of
one answer share (the walked chain, slices placed in it, slice helpers).
"""

from .context import coalesce, normalise
from .finding import FAMILIES, ORACLES, SEVERITY_ORDER, Finding, worst
from .interop import linux_layout
from .run import check, evaluate

__all__ = ["FAMILIES", "ORACLES", "SEVERITY_ORDER", "Finding", "check", "coalesce", "evaluate", "linux_layout",
           "normalise", "worst"]
