"""Fidelity oracles (error): an accepted packet is read as the bytes the driver wrote.

  fidelity.header-size    5.10.6: the header is 44 bytes
  fidelity.header-bytes   5.10.6: fields le64/le32/le16 at fixed offsets, as memory holds them
  fidelity.data-len       5.10.6: a tx packet carries exactly hdr.len bytes of payload
  fidelity.max-data-size  hdr.len <= max_data_size (Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE)
  fidelity.slice-overlap  5.10.6: header and payload are distinct bytes (Firecracker #2686 class)
  fidelity.stream-order   2.6.4 / 5.10.6: the header is the chain's first 44 bytes, the data
                          follows it in order
"""

from __future__ import annotations

from bisect import bisect_left

from ..case.wire import FIELD_NAMES, HEADER_SIZE
from .context import _Context, _merged, _span, _total, coalesce
from .finding import oracle


@oracle("fidelity.header-size", "error", "5.10.6: the header is 44 bytes")
def header_size(ctx: _Context) -> None:
    total = _total(ctx.answer.header_slices)
    if total != HEADER_SIZE:
        ctx.emit(f"header_slices cover {total} bytes; struct virtio_vsock_hdr is {HEADER_SIZE}")


@oracle("fidelity.header-bytes", "error", "5.10.6: header fields are le64/le32/le16 at fixed offsets")
def header_bytes(ctx: _Context) -> None:
    if not ctx.tx:
        return
    hdr = ctx.answer.header
    if hdr is None:
        ctx.emit("the target accepted a tx packet but reported no header", "missing")
        return
    raw = ctx.true_header
    if raw is None or hdr == raw:
        return  # None: header-size or a safety oracle has said why
    wrong = [f"{name} {got} (memory holds {want})"
             for name, got, want in zip(FIELD_NAMES, hdr, raw) if got != want]
    if wrong:
        ctx.emit(f"the decoded header differs from the 44 bytes under header_slices: {', '.join(wrong)}",
                 ",".join(w.split()[0] for w in wrong))


@oracle("fidelity.data-len", "error", "5.10.6: a tx packet carries exactly hdr.len bytes of payload")
def data_len(ctx: _Context) -> None:
    n = ctx.tx_len
    if n is not None and _total(ctx.answer.data_slices) != n:
        ctx.emit(f"data_slices total {_total(ctx.answer.data_slices)} bytes but hdr.len is {n}")


@oracle("fidelity.max-data-size", "error",
        "Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE / rust-vmm InvalidHeaderLen: hdr.len <= max_data_size")
def max_data_size(ctx: _Context) -> None:
    n = ctx.tx_len
    if n is not None and n > ctx.case.max_data_size:
        ctx.emit(f"accepted a tx packet with hdr.len {n} > max_data_size {ctx.case.max_data_size}: "
                 f"the device would buffer more than it may")


@oracle("fidelity.slice-overlap", "error",
        "5.10.6: header and payload are distinct bytes of the packet (Firecracker #2686 class)")
def slice_overlap(ctx: _Context) -> None:
    if ctx.in_stream:
        return  # distinct bytes of the stream: they overlap only where the buffers do
    hs, ds = coalesce(ctx.answer.header_slices), coalesce(ctx.answer.data_slices)
    # Whether any data piece overlaps the header: the last merged header piece starting before
    # the data piece's end runs past its start (sorted, not every pair: answers have 100s of slices).
    starts, ends = _merged(hs)
    if any(ends[bisect_left(starts, a + n) - 1] > a for a, n in ds) and not ctx.chain.buffers_overlap:
        (ha, hn), (da, dn) = next((h, d) for h in hs for d in ds if h[0] < d[0] + d[1] and d[0] < h[0] + h[1])
        ctx.emit(f"header bytes {_span(ha, hn)} and data bytes {_span(da, dn)} overlap although "
                 f"the chain's buffers do not: the payload would be read over the header")


@oracle("fidelity.stream-order", "error",
        "2.6.4 / 5.10.6: the header is the chain's first 44 bytes, the data follows it in order")
def stream_order(ctx: _Context) -> None:
    for gap in ctx.stream_faults:
        if gap[0] == "order":
            ctx.emit(gap[1], gap[2])

