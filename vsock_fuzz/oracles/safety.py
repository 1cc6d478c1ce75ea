"""Safety oracles: what a device must never do whatever the guest wrote.

  safety.crash            no input crashes the device (virtio-queue #173: queue size 0)
  safety.hang             2.7.13.1: a chain is finite; a device bounds its walk
  safety.slice-in-memory  every slice lies in guest memory (Firecracker CVE-2019-18960)
  safety.slice-in-region  a slice is one host mapping, inside one region (CVE-2019-18960)
  safety.slice-in-chain   2.7.4/2.7.5: a device touches only the buffers the chain gives it
  safety.direction        2.7.4.1: the device MUST NOT write to a device-readable buffer
  safety.read-writable    2.7.4.1: the device SHOULD NOT read a device-writable buffer

All are critical (a guest reaching host memory, or stopping the device) but
read-writable, an error: the device reads only memory the driver handed it,
so no host memory is reached; what it takes as payload is a buffer the driver
gave it to fill, and the spec's word is SHOULD NOT.
"""

from __future__ import annotations

from ..model.memory import U64
from .context import _END, _Context, _span
from .finding import oracle


@oracle("safety.crash", "critical", "no input may crash the device (rust-vmm fuzz target; virtio-queue #173)")
def no_crash(ctx: _Context) -> None:
    if ctx.answer.error_class == "crash":
        # A process target's title names the crash site (targets.crash_title): one bug, one
        # finding, whether the chain went through an indirect table or not; and no walk of the
        # case, whose coverage (the Python model's, under a fuzz worker) would keep crashing
        # inputs in the corpus. A py: target's crash has none; its exception's type and the
        # chain's shape tell crashes apart.
        answer = ctx.answer
        if answer.title:
            ctx.emit(f"the target crashed: {answer.detail}", answer.title, indirect=False)
        else:
            ctx.emit(f"the target crashed: {answer.detail}", answer.detail.split(":", 1)[0][:60])


@oracle("safety.hang", "critical", "2.7.13.1: a chain is finite; a device bounds its walk (virtio-queue 0.6.1 loop)")
def no_hang(ctx: _Context) -> None:
    if ctx.answer.error_class == "hang":
        ctx.emit(f"the target did not answer: {ctx.answer.detail}")


@oracle("safety.slice-in-memory", "critical", "Firecracker CVE-2019-18960: every slice lies in guest memory")
def slice_in_memory(ctx: _Context) -> None:
    for field, i, a, n, end in [p for p in ctx.outside_region if p[_END] is None]:
        where = "wraps past 2^64" if a + n > U64 else "starts outside every memory region"
        ctx.emit(f"{field}[{i}] = {_span(a, n)} {where}: the host would "
                 f"{'read' if ctx.tx else 'write'} memory that is not the guest's", field)


@oracle("safety.slice-in-region", "critical",
        "Firecracker CVE-2019-18960: a slice is one host mapping, inside one region")
def slice_in_region(ctx: _Context) -> None:
    for field, i, a, n, end in [p for p in ctx.outside_region if p[_END] is not None]:
        start = max(s for s in (r.gpa for r in ctx.case.regions) if s <= a)
        ctx.emit(f"{field}[{i}] = {_span(a, n)} runs {a + n - end} bytes past the end of region "
                 f"[{start:#x}, {end:#x}) — CVE-2019-18960 class: host memory past a region would be "
                 f"{'read' if ctx.tx else 'written'}", field)


@oracle("safety.slice-in-chain", "critical",
        "2.7.4/2.7.5: a device touches only the buffers the chain's descriptors give it")
def slice_in_chain(ctx: _Context) -> None:
    chain = ctx.chain
    for field, i, a, n in ctx.outside_chain:
        stop = f" (the walk stops there: {chain.error.detail})" if chain.error else ""
        ctx.emit(f"{field}[{i}] = {_span(a, n)} is not inside any buffer of the chain's "
                 f"{len(chain.used)} descriptors{stop}: the device would "
                 f"{'read' if ctx.tx else 'write'} guest memory the driver did not hand it", field)


@oracle("safety.direction", "critical", "2.7.4.1: the device MUST NOT write to a device-readable buffer",
        "MUST NOT")
def direction(ctx: _Context) -> None:
    if not ctx.tx:
        for field, i, a, n in _wrong_direction(ctx):
            ctx.emit(f"{field}[{i}] = {_span(a, n)} on the rx queue writes device-readable memory: a buffer "
                     f"the guest may still be reading from (2.7.4.1)", field)


@oracle("safety.read-writable", "error", "2.7.4.1: the device SHOULD NOT read a device-writable buffer",
        "SHOULD NOT")
def read_writable(ctx: _Context) -> None:
    if ctx.tx:
        for field, i, a, n in _wrong_direction(ctx):
            ctx.emit(f"{field}[{i}] = {_span(a, n)} on the tx queue reads a device-writable buffer as packet "
                     f"data: the guest expects the device to fill it", field)


def _wrong_direction(ctx: _Context) -> list:
    """The slices inside the chain but in a buffer of the other direction than the queue's."""
    chain, want = ctx.chain, not ctx.tx
    if chain.writable == want:
        return []  # every buffer has the queue's direction: a slice inside the chain is inside one of them
    inside = [p for p in ctx.placed if p not in ctx.outside_chain]
    return chain.outside(inside, want)

