"""The case: one complete input (guest memory, its contents, the ring, the queue),
its binary form for coverage-guided mutation (binary), its JSON form (value's
to_request/from_request), the layouts it is built from (layout), the byte
formats it is made of (wire) and its files on disk (corpus).

The bottom layer: it imports nothing else of vsock_fuzz."""

from .value import U64, Case, CaseError, Region, Ring, Write

__all__ = ["U64", "Case", "CaseError", "Region", "Ring", "Write"]
