"""Conformance oracles (warning): what the spec allows that a device refuses, and what it forbids
that a device lets through.

  conformance.stream-gap          2.6.4: the device MUST NOT make assumptions about the
                                  arrangement of descriptors (data skipping bytes of the chain)
  conformance.valid-rejected      2.6.4: the same, for spec-valid layouts rejected
  conformance.malformed-accepted  2.7.13.1 / 2.7.5.3.1: loops, bad indexes and bad indirect
                                  tables are driver errors; accepting them is noted, not unsafe

A target that accepts a well-formed chain the spec model accepts too is not
re-checked for chain malformations (the model walked it all).

Why warnings although 2.6.4.1's word is MUST NOT: the same section lets a
device limit the descriptors it takes (MAY), every VMM in the facts file
keeps the header in the head descriptor, and no guest driver sends the
arrangements these oracles try (the ones drivers send are interop's, at
error). A refusal here breaks no guest today; `--strict` makes it fail.
Accepting a malformed chain breaks the driver's MUST NOT, not the device's.
"""

from __future__ import annotations

from ..case.wire import DESC_SIZE, DESC_STRUCT, F_INDIRECT, HEADER_SIZE
from .context import _Context
from .finding import oracle
from .interop import linux_shape


@oracle("conformance.stream-gap", "warning",
        "2.6.4: the device MUST NOT make assumptions about the arrangement of descriptors", "MUST NOT")
def stream_gap(ctx: _Context) -> None:
    for gap in ctx.stream_faults:
        if gap[0] == "gap":
            ctx.emit(gap[1], gap[2])


@oracle("conformance.valid-rejected", "warning",
        "2.6.4: the device MUST NOT make assumptions about the particular arrangement of descriptors", "MUST NOT")
def valid_rejected(ctx: _Context) -> None:
    ans = ctx.answer
    if ans.ok or linux_shape(ctx):
        return
    traits = _layout_traits(ctx) if ctx.traits is None else ctx.traits
    ctx.emit(f"a spec-valid {ctx.case.queue} chain ({', '.join(traits) or 'no unusual trait'}) was rejected "
             f"with {ans.error}: {ans.detail}", ", ".join(traits))


def _layout_traits(ctx: _Context) -> list[str]:
    """What is unusual about a spec-valid chain, to say which arrangement a target refuses
    (core/src/refusal.rs works them out as well, for the compiled per-case path)."""
    chain, mem, case = ctx.chain, ctx.mem, ctx.case
    used = chain.used
    out = []
    if used and used[0].len < HEADER_SIZE:
        n, k = 0, 0
        while n < HEADER_SIZE and k < len(used):
            n += used[k].len
            k += 1
        out.append(f"header split over {k} descriptors")
    if len(chain.descs) != len(used):
        out.append("zero-length descriptors")
    if len(used) > 2:
        out.append(f"{len(used)} descriptors")
    if any(len(mem.slices(d.addr, d.len) or ()) > 1 for d in used):
        out.append("a buffer crossing adjacent regions")
    if chain.total >= 1 << 32:
        out.append("a chain of 2^32 bytes (the spec's limit, one past u32::MAX)")
    if not ctx.tx and chain.total == HEADER_SIZE:
        out.append("an rx buffer with room for the header only")
    if not ctx.tx and chain.total - HEADER_SIZE > case.max_data_size:
        out.append("rx buffers longer than the header plus max_data_size")
    if any(mem.slices(d.addr, d.len) is None for d in used):
        out.append("a buffer running out of guest memory past the bytes the packet uses")
    if ctx.tx and len(used) > 1 and used[0].len > HEADER_SIZE:
        out.append("payload in the head descriptor and more descriptors after it")
    if any(d.writable == ctx.tx for d in used):
        out.append(f"{'writable' if ctx.tx else 'readable'} descriptors after the packet")
    at = case.ring.desc_table + DESC_SIZE * case.ring.head
    if DESC_STRUCT.unpack(mem.read(at, DESC_SIZE))[2] & F_INDIRECT:
        out.append("indirect table")
    return out


@oracle("conformance.malformed-accepted", "warning",
        "2.7.13.1 / 2.7.5.3.1: loops, bad indexes and bad indirect tables are driver errors; noted, not unsafe")
def malformed_accepted(ctx: _Context) -> None:
    if not ctx.answer.ok or (ctx.model is not None and ctx.profile == "spec" and ctx.model.ok):
        return  # the spec model walks the whole chain: had it been malformed, it would have refused
    e = ctx.chain.queue_error or ctx.chain.error
    if e is not None:
        ctx.emit(f"the target accepted a chain the spec forbids ({e.name}: {e.detail}); a device that "
                 f"stops reading early never sees the fault, but the driver broke a MUST", e.name)

