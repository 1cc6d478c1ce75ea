"""The rows of `vsock-fuzz check`, as data: what each layout is, what a correct
device must do with it, and the rule that says so.

Every entry is a `Spec(name, group, expect, family, rule, layout)`; check.py
assembles each layout into a case and reads the expected slices back from the
descriptor tables. `expect` and `family` are explained in check.py's
docstring. The few groups that repeat one shape (every Linux version, the
header split at every offset, a direction slip in every position) are
comprehensions over that shape.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from ..case.layout import LINUX_VERSIONS, PAGE, Buf, Layout, linux_header, linux_rx, linux_tx
from ..case.value import Region
from ..case.wire import DESC_SIZE, F_INDIRECT, F_NEXT, F_WRITE, HEADER_SIZE, MAX_PKT_BUF_SIZE, Header, pack_descriptor

W = F_WRITE
KiB = 1024
# The connection every tx row's header is from (linux_header: the op follows the length);
# distinct values so a decoding slip shows.
HDR = Header(src_cid=3, dst_cid=2, src_port=49153, dst_port=1234, type=1, op=5, flags=0,
             buf_alloc=262144, fwd_cnt=4096)
EXPLICIT = 0x80000  # explicitly placed buffers live here, far from assemble's data area


class Spec(NamedTuple):
    name: str
    group: str
    expect: str   # accept | either | reject | any (for_device: the oracles alone judge)
    family: str   # the oracle family a wrong answer counts in
    rule: str     # the spec section, driver fact or real bug the row stands for
    layout: Layout


def _tx(bufs, length, **kw) -> Layout:
    # What Linux sends with this length: a device that checks the header first judges the layout.
    return Layout("tx", tuple(bufs), header=linux_header(length, HDR), **kw)


def _rx(bufs, **kw) -> Layout:
    return Layout("rx", tuple(bufs), **kw)


def _size(n: int) -> str:
    return f"{n // KiB}KiB" if n and n % KiB == 0 else f"{n}B"


# --- Linux drivers (interop): every version, tx at the sizes where layouts change, rx ---

FACTS = "virtio-vsock-facts: what real guest drivers put on the queues"
LINUX_BUGS = {"5.x": "", "6.2": "; vm-virtio #204, Cloud Hypervisor #5691",
              "6.17": "; Cloud Hypervisor #7672, libkrun #535"}
VIAS = ((False, ""), (True, "/indirect"))
PAYLOADS = (0, KiB, 32 * KiB, 33 * KiB, 64 * KiB)

LINUX = tuple(row for version in LINUX_VERSIONS for indirect, via in VIAS for row in (
    *(Spec(f"tx/linux-{version}/{_size(payload)}{via}", "linux-tx", "accept", "interop",
           f"{FACTS} (Linux {version}{LINUX_BUGS[version]})",
           linux_tx(version, payload, indirect=indirect, header=HDR)) for payload in PAYLOADS),
    Spec(f"rx/linux-{version}{via}", "linux-rx", "accept", "interop", f"{FACTS} (Linux {version})",
         linux_rx(version, indirect=indirect)),
))

# --- the header split at every offset, small pieces (2.6.4 message framing) ---

SPLIT = "2.6.4 message framing: the header may span descriptors; a device MAY limit descriptors"
PIECES = "2.6.4 message framing: data may come in any number of pieces"

FRAMING = (
    *(Spec(f"tx/header-split@{k}", "header-split", "either", "conformance", SPLIT,
           _tx([Buf(k), Buf(HEADER_SIZE - k + 64)], 64)) for k in range(1, HEADER_SIZE)),
    *(Spec(f"rx/header-split@{k}", "header-split", "either", "conformance", SPLIT,
           _rx([Buf(k, W), Buf(HEADER_SIZE - k + PAGE, W)])) for k in range(1, HEADER_SIZE)),
    Spec("tx/data-1-byte-pieces", "pieces", "either", "conformance", PIECES,
         _tx([Buf(HEADER_SIZE)] + [Buf(1)] * 64, 64)),
    Spec("tx/header-1-byte-pieces", "pieces", "either", "conformance", PIECES,
         _tx([Buf(1)] * HEADER_SIZE + [Buf(64)], 64)),
    Spec("rx/data-1-byte-pieces", "pieces", "either", "conformance", PIECES,
         _rx([Buf(HEADER_SIZE, W)] + [Buf(1, W)] * 64)),
    Spec("tx/data-shares-header-then-next", "pieces", "either", "conformance", PIECES,
         _tx([Buf(HEADER_SIZE + 16), Buf(84)], 100)),
    Spec("tx/zero-length-descriptor", "pieces", "either", "conformance",
         "2.6.4; a zero-length buffer carries no bytes", _tx([Buf(HEADER_SIZE), Buf(0), Buf(100)], 100)),
    Spec("tx/trailing-writable-buffer", "pieces", "either", "conformance",
         "2.6.4.2: device-writable buffers follow the readable ones; the packet ends before them",
         _tx([Buf(HEADER_SIZE + 100), Buf(64, W)], 100)),
)

# --- memory: region ends (Firecracker CVE-2019-18960 was an off-by-one here), crossings, holes ---

ONE = (Region(0, 0x10000),)
TWO = (Region(0, 0x10000), Region(0x10000, 0x10000))
HOLEY = (Region(0, 0x10000), Region(0x20000, 0x10000))
END = 0x10000
CVE = "Firecracker CVE-2019-18960: bounds check at the end of a memory region"
CROSS = "target-protocol: adjacent regions are separate host mappings; slices are cut at the boundary"
MISALIGNED = "2.7.2 aligns the rings only; buffers may start at any byte"

MEMORY = (
    Spec("tx/data-ends-at-region-end", "region-end", "accept", "interop", CVE,
         _tx([Buf(HEADER_SIZE), Buf(100, addr=END - 100)], 100, regions=ONE)),
    Spec("tx/single-ends-at-region-end", "region-end", "accept", "interop", CVE,
         _tx([Buf(HEADER_SIZE + 100, addr=END - 144)], 100, regions=ONE)),
    Spec("rx/ends-at-region-end", "region-end", "accept", "interop", CVE,
         _rx([Buf(HEADER_SIZE + PAGE, W, addr=END - HEADER_SIZE - PAGE)], regions=ONE)),
    Spec("tx/data-one-past-region-end", "region-end", "reject", "safety", CVE,
         _tx([Buf(HEADER_SIZE), Buf(100, addr=END - 99)], 100, regions=ONE)),
    Spec("tx/header-one-past-region-end", "region-end", "reject", "safety", CVE,
         _tx([Buf(HEADER_SIZE, addr=END - 43), Buf(100)], 100, regions=ONE)),
    Spec("rx/one-past-region-end", "region-end", "reject", "safety", CVE,
         _rx([Buf(HEADER_SIZE + PAGE, W, addr=END - HEADER_SIZE - PAGE + 1)], regions=ONE)),
    Spec("tx/data-wraps-2^64", "region-end", "reject", "safety",
         "addr + len past 2^64 is no guest memory (Firecracker #2686 class)",
         _tx([Buf(HEADER_SIZE), Buf(100, addr=(1 << 64) - 16)], 100)),
    Spec("tx/data-crosses-regions", "regions", "accept", "conformance", CROSS,
         _tx([Buf(HEADER_SIZE), Buf(100, addr=END - 40)], 100, regions=TWO)),
    Spec("tx/header-crosses-regions", "regions", "accept", "conformance", CROSS,
         _tx([Buf(HEADER_SIZE, addr=END - 20), Buf(100)], 100, regions=TWO)),
    Spec("tx/single-crosses-regions", "regions", "accept", "conformance", CROSS,
         _tx([Buf(HEADER_SIZE + 100, addr=END - 60)], 100, regions=TWO)),
    Spec("rx/crosses-regions", "regions", "accept", "conformance", CROSS,
         _rx([Buf(HEADER_SIZE + PAGE, W, addr=END - 100)], regions=TWO)),
    Spec("tx/data-runs-into-hole", "regions", "reject", "safety", "a buffer in a hole is not guest memory",
         _tx([Buf(HEADER_SIZE), Buf(100, addr=END - 40)], 100, regions=HOLEY)),
    Spec("tx/misaligned-buffers", "misaligned", "accept", "conformance", MISALIGNED,
         _tx([Buf(HEADER_SIZE, addr=EXPLICIT + 1), Buf(100, addr=EXPLICIT + 0x103)], 100)),
    Spec("tx/misaligned-single", "misaligned", "accept", "conformance", MISALIGNED,
         _tx([Buf(HEADER_SIZE + 100, addr=EXPLICIT + 7)], 100)),
    Spec("rx/misaligned-buffers", "misaligned", "accept", "conformance", MISALIGNED,
         _rx([Buf(HEADER_SIZE, W, addr=EXPLICIT + 3), Buf(PAGE, W, addr=EXPLICIT + 0x105)])),
)

# --- the chain shorter than hdr.len (a device that trusts hdr.len reads past its buffers) ---

SHORT = ("5.10.6: hdr.len is the payload's length; a chain with fewer bytes after the header is no packet "
         "(the model's DataTooShort): truncating it is fidelity.data-len, reading on safety.slice-in-chain")

DATA_LEN = (
    Spec("tx/data-one-byte-short", "data-len", "reject", "fidelity", SHORT, _tx([Buf(HEADER_SIZE), Buf(99)], 100)),
    Spec("tx/single-one-byte-short", "data-len", "reject", "fidelity", SHORT, _tx([Buf(HEADER_SIZE + 99)], 100)),
    Spec("tx/data-pieces-last-short", "data-len", "reject", "fidelity", SHORT,
         _tx([Buf(HEADER_SIZE), Buf(32), Buf(32), Buf(35)], 100)),
)

# --- long chains (a device collecting descriptors into a fixed array overruns it) ---

MANY = ("2.6.4 message framing: data may come in any number of pieces; a device MAY limit their number, "
        "by refusing longer chains, not by overrunning an array")
PIECE = 64

LONG = tuple(row for n in (33, 64, 128) for row in (
    Spec(f"tx/{n}-descriptors", "long-chain", "either", "conformance", MANY,
         _tx([Buf(HEADER_SIZE)] + [Buf(PIECE)] * (n - 1), PIECE * (n - 1))),
    Spec(f"rx/{n}-descriptors", "long-chain", "either", "conformance", MANY,
         _rx([Buf(HEADER_SIZE, W)] + [Buf(PIECE, W)] * (n - 1))),
))

# --- hdr.len against max_data_size (Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE, rust-vmm InvalidHeaderLen) ---

MDS = "hdr.len <= max_data_size (Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE; rust-vmm InvalidHeaderLen)"

def lengths(limits, rx_limit: int) -> tuple[Spec, ...]:
    """The max-data-size group for the payload limits given (a device with a fixed one: just it)."""
    return (
        *(row for limit in limits for row in (
            Spec(f"tx/hdr.len=max_data_size({limit})", "max-data-size", "accept", "interop", MDS,
                 _tx([Buf(HEADER_SIZE), Buf(limit)], limit, max_data_size=limit)),
            Spec(f"tx/hdr.len=max_data_size+1({limit})", "max-data-size", "reject", "fidelity", MDS,
                 _tx([Buf(HEADER_SIZE), Buf(limit + 1)], limit + 1, max_data_size=limit)))),
        Spec("tx/hdr.len=2^32-1", "max-data-size", "reject", "fidelity", MDS,
             _tx([Buf(HEADER_SIZE), Buf(100)], 0xFFFFFFFF)),
        Spec("rx/data=max_data_size", "max-data-size", "accept", "interop",
             "an rx buffer of max_data_size holds a full packet",
             _rx([Buf(HEADER_SIZE, W), Buf(rx_limit, W)], max_data_size=rx_limit)),
        Spec("rx/data=max_data_size+1", "max-data-size", "either", "conformance",
             "a larger rx buffer is legal (the device writes at most max_data_size); rust-vmm rejects it",
             _rx([Buf(HEADER_SIZE, W), Buf(rx_limit + 1, W)], max_data_size=rx_limit)),
    )


LENGTHS = lengths((MAX_PKT_BUF_SIZE, 4 * KiB), 4 * KiB)

# --- direction slips in every position (2.7.4.1) ---

SLIP = "2.7.4.1 buffer direction: tx reads device-readable buffers, rx writes device-writable ones"
TX_LENS, RX_LENS = (HEADER_SIZE, 32, 32, 36), (HEADER_SIZE, 32, 32, 32)
FRAGS = linux_tx("6.17", 33 * KiB, header=HDR)
FRAG_SLIPS = ((0, "head"), (1, "first-fragment"), (len(FRAGS.bufs) - 1, "last-fragment"))

DIRECTION = (
    *(row for i in range(4) for row in (
        Spec(f"tx/writable-slip@{i}", "direction", "reject", "safety", SLIP,
             _tx([Buf(n, W if j == i else 0) for j, n in enumerate(TX_LENS)], 100)),
        Spec(f"rx/readable-slip@{i}", "direction", "reject", "safety", SLIP,
             _rx([Buf(n, 0 if j == i else W) for j, n in enumerate(RX_LENS)])))),
    *(Spec(f"tx/linux-6.17/33KiB/writable-slip@{where}", "direction", "reject", "safety", SLIP,
           Layout("tx", tuple(Buf(b.len, W) if j == i else b for j, b in enumerate(FRAGS.bufs)),
                  header=FRAGS.header)) for i, where in FRAG_SLIPS),
    Spec("tx/writable-slip-in-indirect-table", "direction", "reject", "safety", SLIP,
         _tx([Buf(2 * DESC_SIZE, F_INDIRECT, table=(Buf(HEADER_SIZE), Buf(100, W)))], 100)),
)

# --- malformed chains (2.7.13.1: no loops, no longer than the queue; next < queue size) ---

WALK = "2.7.13.1: a chain has no loops and is no longer than the queue size (ttl)"
INDEX = "2.7.5: next is an index into the descriptor table (< queue size)"

CHAINS = (
    Spec("tx/loop-at-head", "chain", "reject", "conformance", WALK, _tx([Buf(HEADER_SIZE, next=0), Buf(100)], 100)),
    Spec("tx/loop-on-data", "chain", "reject", "conformance", WALK,
         _tx([Buf(HEADER_SIZE), Buf(20, F_NEXT, next=1)], 100)),
    Spec("tx/two-cycle", "chain", "reject", "conformance", WALK, _tx([Buf(HEADER_SIZE), Buf(20, F_NEXT, next=0)], 100)),
    Spec("tx/loop-after-complete-packet", "chain", "reject", "conformance", WALK,
         _tx([Buf(HEADER_SIZE + 100, F_NEXT, next=0)], 100)),
    Spec("rx/loop-on-data", "chain", "reject", "conformance", WALK,
         _rx([Buf(HEADER_SIZE, W), Buf(PAGE, W | F_NEXT, next=1)])),
    Spec("tx/next-out-of-range", "chain", "reject", "conformance", INDEX,
         _tx([Buf(HEADER_SIZE, next=256), Buf(100)], 100)),
    Spec("tx/next-out-of-range-after-packet", "chain", "reject", "conformance", INDEX,
         _tx([Buf(HEADER_SIZE + 100, F_NEXT, next=0xFFFF)], 100)),
    Spec("tx/chain-over-2^32-bytes", "chain", "reject", "conformance",
         "2.7.13.1: a chain holds at most 2^32 bytes (virtio-queue 0.8.0)",
         _tx([Buf(HEADER_SIZE + 100), Buf(0xFFFFFFFF, addr=EXPLICIT), Buf(0xFFFFFFFF, addr=EXPLICIT)], 100)),
)

# --- queue set-up (2.7: size a power of 2 in 1..32768; the head names a descriptor) ---

QUEUE = "2.7: queue size is a power of 2 in 1..32768; the head is an index < queue size"
SINGLE = [Buf(HEADER_SIZE + 100)]

QUEUES = (
    Spec("tx/head-out-of-range", "queue", "reject", "conformance", QUEUE, _tx(SINGLE, 100, head=256)),
    Spec("tx/queue-size-0", "queue", "reject", "conformance", f"{QUEUE} (virtio-queue #173: division by zero)",
         _tx(SINGLE, 100, size=0)),
    Spec("tx/queue-size-3", "queue", "reject", "conformance", QUEUE, _tx(SINGLE, 100, size=3)),
    Spec("tx/queue-size-1", "queue", "accept", "conformance", QUEUE, _tx(SINGLE, 100, size=1)),
    Spec("tx/queue-size-32768", "queue", "accept", "conformance", QUEUE, _tx(SINGLE, 100, size=32768)),
)

# --- indirect tables (2.7.5.3) ---

IND = "2.7.5.3"
TABLE = (Buf(HEADER_SIZE), Buf(100))
PAST_TABLE = EXPLICIT + 0x1000

INDIRECT = (
    Spec("tx/indirect-after-direct", "indirect", "accept", "conformance",
         f"{IND}.2 indirect descriptors: the device MUST handle normal descriptors followed by one indirect one",
         _tx([Buf(HEADER_SIZE), Buf(DESC_SIZE, F_INDIRECT, table=(Buf(100),))], 100)),
    Spec("tx/indirect-write-flag-ignored", "indirect", "accept", "conformance",
         f"{IND}.2 indirect descriptors: the device MUST ignore WRITE on the descriptor that refers to the table",
         _tx([Buf(2 * DESC_SIZE, F_INDIRECT | W, table=TABLE)], 100)),
    Spec("tx/indirect-misaligned-table", "indirect", "accept", "conformance",
         f"{IND} indirect descriptors: no alignment for indirect tables (virtio-queue 0.7.1 rejected valid chains)",
         _tx([Buf(2 * DESC_SIZE, F_INDIRECT, addr=EXPLICIT + 8, table=TABLE)], 100)),
    Spec("tx/indirect-nested", "indirect", "reject", "conformance", f"{IND}.1 indirect descriptors: one level only",
         _tx([Buf(DESC_SIZE, F_INDIRECT, table=(Buf(2 * DESC_SIZE, F_INDIRECT, table=TABLE),))], 100)),
    Spec("tx/indirect-len-not-multiple-of-16", "indirect", "reject", "conformance",
         f"{IND} indirect descriptors: a table holds len/16 descriptors (virtio-queue rejects other lengths)",
         _tx([Buf(2 * DESC_SIZE + 8, F_INDIRECT, table=TABLE)], 100)),
    Spec("tx/indirect-len-0", "indirect", "reject", "conformance", f"{IND} indirect descriptors: an empty table is no buffer",
         _tx([Buf(0, F_INDIRECT, table=TABLE)], 100)),
    Spec("tx/indirect-with-next", "indirect", "reject", "conformance",
         f"{IND}.1 indirect descriptors: the driver MUST NOT set INDIRECT and NEXT together",
         _tx([Buf(2 * DESC_SIZE, F_INDIRECT, table=TABLE), Buf(16)], 100)),
    Spec("tx/indirect-table-in-hole", "indirect", "reject", "safety", f"{IND} indirect descriptors: the table must be guest memory",
         _tx([Buf(2 * DESC_SIZE, F_INDIRECT, addr=0x18000, table=TABLE)], 100, regions=HOLEY)),
    Spec("tx/indirect-self-loop", "indirect", "reject", "conformance",
         f"{IND} indirect descriptors: a chain inside a table is bounded by the table size",
         _tx([Buf(2 * DESC_SIZE, F_INDIRECT, table=(Buf(HEADER_SIZE, F_NEXT, next=0), Buf(100)))], 100)),
    Spec("tx/indirect-next-out-of-range", "indirect", "reject", "conformance",
         f"{IND} indirect descriptors: next indexes the table (< len/16)",
         _tx([Buf(2 * DESC_SIZE, F_INDIRECT, table=(Buf(HEADER_SIZE, next=7), Buf(100)))], 100)),
    # The memory right after the table holds a descriptor no chain gave: a walk bounded by the
    # queue size instead of the table's length takes its buffer (safety.slice-in-chain).
    Spec("tx/indirect-next-past-table", "indirect", "reject", "safety",
         f"{IND} indirect descriptors: a table holds len/16 descriptors; the next one is not the chain's",
         _tx([Buf(2 * DESC_SIZE, F_INDIRECT, addr=PAST_TABLE, table=(Buf(HEADER_SIZE, next=2), Buf(100)))], 100,
             extra=((PAST_TABLE + 2 * DESC_SIZE, pack_descriptor(PAST_TABLE + 0x400, 100, 0, 0)),))),
)

SPECS = (*LINUX, *FRAMING, *LONG, *MEMORY, *DATA_LEN, *LENGTHS, *DIRECTION, *CHAINS, *QUEUES, *INDIRECT)


# --- the rows a device that describes itself is held to ---

NOT_OFFERED = "the device did not offer VIRTIO_F_INDIRECT_DESC: it may follow, ignore or refuse the flag"


def for_device(device) -> tuple[tuple[Spec, ...], list[str]]:
    """The rows as a device of this description is judged by them, and the names of the rows it
    cannot be given (memory its adapter does not map, a chain longer than its queue). Without a
    description: SPECS as they are.

    - A fixed max_data_size is the limit of the max-data-size rows, and a tx packet over it
      is one the device must refuse (fidelity), whatever Linux version laid it out.
    - Without VIRTIO_F_INDIRECT_DESC an indirect table is a driver error the device may follow,
      ignore or refuse: such rows expect nothing ("any") and the oracles judge what it does,
      but for the safety rows (memory it must not touch whichever way it reads the flag).
    - A queue above max_queue_size is an expected refusal; rows laid out in a larger queue
      than it allows are laid out in the largest it allows, but for chains longer than that
      queue: no driver can give them to it (2.7.13.1), so they are not given."""
    if not device.described:
        return SPECS, []
    limit = device.max_data_size
    specs = SPECS if limit is None else (*LINUX, *FRAMING, *LONG, *MEMORY, *DATA_LEN, *lengths((limit,), limit),
                                         *DIRECTION, *CHAINS, *QUEUES, *INDIRECT)
    out, skipped = [], []
    for s in specs:
        lay = s.layout
        if not _maps(lay, device) or (s.group != "queue" and len(lay.bufs) > device.max_queue_size):
            skipped.append(s.name)
            continue
        if s.group == "queue" and lay.size > device.max_queue_size:
            s = s._replace(expect="reject", rule=f"{s.rule}; above the device's max_queue_size "
                                                 f"{device.max_queue_size}")
        elif lay.size > device.max_queue_size:
            s = s._replace(layout=replace(lay, size=device.max_queue_size))
        if limit is not None and s.expect != "reject" and lay.header is not None and lay.header.len > limit:
            s = s._replace(expect="reject", family="fidelity", rule=f"{MDS}; the device's fixed limit is {limit}")
        if not device.indirect and s.family != "safety" and _uses_indirect(lay.bufs):
            s = s._replace(expect="any", rule=f"{s.rule}; {NOT_OFFERED}")
        out.append(s)
    return tuple(out), skipped


def _uses_indirect(bufs) -> bool:
    return any(b.flags & F_INDIRECT for b in bufs)


def _maps(lay: Layout, device) -> bool:
    if device.max_regions is not None and len(lay.regions) > device.max_regions:
        return False
    return device.max_region_size is None or all(r.size <= device.max_region_size for r in lay.regions)
