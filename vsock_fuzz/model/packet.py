"""TX/RX packet parsing: the reference model every answer is checked against.

`parse(case, profile)` is a pure function from a case to an answer.

Profile `spec` (virtio 1.2, 2.6.4 message framing, 5.10.6 vsock):
  - guest-physical memory is one address space; a buffer crossing adjacent
    regions is valid and its slices are cut at the region boundary;
  - the header is the first 44 bytes of the chain's byte stream, tx data the
    next `hdr.len` bytes, each in any number of pieces;
  - rx data is the rest of the stream, up to `max_data_size` bytes: the device
    never puts more payload than that in one packet, so it never writes
    further, and a driver may legally offer a larger buffer (rejecting it
    would break such a driver);
  - every descriptor whose bytes the packet uses must have the queue's
    direction (tx buffers device-readable, rx device-writable); zero-length
    descriptors and descriptors past the end of the packet are not used;
  - the whole chain is walked, so a malformed chain (loop, bad index, bad
    indirect table, over 2^32 bytes) is rejected even past the packet;
    inside an indirect table the walk is bounded by the table's own size (at
    most u16::MAX entries, as virtio-queue), not by the queue size;
  - memory is checked for exactly the bytes the answer reports.

Profile `rust-vmm`: rust-vmm virtio-vsock 0.12 `from_tx_virtq_chain` /
`from_rx_virtq_chain` over virtio-queue, as an adapter drives them: it sets
the queue up with the `try_set_*` setters, checks `Queue::is_valid`, pops the
chain and parses it. Header in the head descriptor, a lone head or exactly
one data descriptor, `FragmentedMemory` on a region crossing. The chain
iterator returns `None` on every chain error (bad index, loop, unreadable
descriptor, bad indirect table, over u32::MAX bytes), which the packet code
reports as `DescriptorChainTooShort`; a head index past the queue is such an
error too (`AvailIter` hands it to `DescriptorChain::new` unchecked). The
crate takes `max_data_size` as a u32; the model compares the case's value
as it is, which is what an adapter clamping larger values to u32::MAX does.
"""

from __future__ import annotations

from operator import attrgetter
from typing import NamedTuple

from ..case.value import Case
from ..case.wire import DESC_SIZE, F_INDIRECT, F_WRITE, HEADER_SIZE, TYPE_SEQPACKET, Header
from .answer import Answer
from .chain import MAX_QUEUE_SIZE, ChainError, Walked, walk, walked, walked_plain
from .device import ASSUMED, Device
from .memory import U64, GuestMemory

PROFILES = ("spec", "rust-vmm")


class Reading(NamedTuple):
    """One answer a correct device may give, and the chain as that device walks it."""
    answer: Answer
    walked: Walked
    why: str = ""            # why a device may answer so, for every reading but the model's own
    spec: Answer | None = None  # the spec profile's answer under this reading (None: parse it)


def parse(case: Case, profile: str = "spec", device: Device = ASSUMED) -> Answer:
    return _parse(case, walked(case), profile, device)


def readings(case: Case, profile: str = "spec", device: Device = ASSUMED) -> tuple[Reading, ...]:
    """The model's answer first, then the other answers the device's offer makes legal.

    A device that did not offer VIRTIO_F_INDIRECT_DESC may reject a chain that sets
    INDIRECT (the driver broke 2.7.5.3's precondition) or ignore the flag and read the
    descriptor as a plain buffer; following the table anyway (the model's answer) is
    allowed too. One that did not offer VIRTIO_VSOCK_F_SEQPACKET may refuse a
    SEQPACKET packet (5.10.6: type 2 needs the feature)."""
    w = walked(case)
    first = Reading(_parse(case, w, profile, device), w)
    if device.features is None:
        return (first,)
    out = [first]
    if not device.indirect:
        plain = walked_plain(case, w.mem)
        if any(d.flags & F_INDIRECT for d in plain.chain[0]):
            answer = _parse(case, plain, profile, device)
            spec = answer if profile == "spec" else _parse(case, plain, "spec", device)
            out.append(Reading(answer, plain, "it did not offer VIRTIO_F_INDIRECT_DESC, so it may read an "
                                              "INDIRECT descriptor as a plain buffer", spec))
            out.append(_refusal(w, "IndirectNotOffered", "INDIRECT set on a device without VIRTIO_F_INDIRECT_DESC",
                                "it did not offer VIRTIO_F_INDIRECT_DESC, so it may reject a chain that sets INDIRECT"))
    if not device.seqpacket and any(r.answer.ok and r.answer.header is not None
                                    and r.answer.header.type == TYPE_SEQPACKET for r in out):
        out.append(_refusal(w, "SeqpacketNotOffered", "a SEQPACKET packet on a device without VIRTIO_VSOCK_F_SEQPACKET",
                            "it did not offer VIRTIO_VSOCK_F_SEQPACKET, so it may refuse SEQPACKET packets"))
    return tuple(out)


def _refusal(w: Walked, name: str, detail: str, why: str) -> Reading:
    refused = Answer.reject(name, "chain", detail)
    return Reading(refused, w, why, refused)


def _parse(case: Case, w: Walked, profile: str, device: Device) -> Answer:
    # The model's answer and its readings are asked for more than once per case (evaluate, then
    # check's readings): parsed once per walked chain.
    key = (profile, device)
    answer = w.parsed.get(key)
    if answer is None:
        answer = w.parsed[key] = _parse_walked(case, w, profile, device)
    return answer


def _parse_walked(case: Case, w: Walked, profile: str, device: Device) -> Answer:
    # The device's transport refuses a queue larger than its maximum before any chain exists.
    if case.ring.size > device.max_queue_size and device.max_queue_size < MAX_QUEUE_SIZE:
        return Answer.reject("QueueSizeAboveMaximum", "queue",
                             f"queue size {case.ring.size} > the device's maximum {device.max_queue_size}")
    try:
        if profile == "spec":
            return _parse_spec(case, w)
        if profile == "rust-vmm":
            _check_queue_rust_vmm(w.mem, case.ring)
            return _parse_rust_vmm(case, w.mem, w.tables)
    except ChainError as e:
        return Answer.reject(e.name, e.kind, e.detail)
    raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")


# --- spec --------------------------------------------------------------------

def _parse_spec(case: Case, w: Walked) -> Answer:
    # The queue set-up, then the whole chain (walked once per case: chain.walked).
    error = w.queue_error
    if error is None:
        chain, error = w.chain
    if error is not None:
        return Answer.reject(error.name, error.kind, error.detail)
    mem = w.mem
    rx = case.queue == "rx"
    stream = _Stream(chain, mem, rx)
    header_slices = stream.take(HEADER_SIZE)
    if header_slices is None:
        return Answer.reject("HeaderTooShort", "length", f"the chain's {case.queue} buffers hold fewer than {HEADER_SIZE} bytes")
    if rx:
        data_slices = stream.take(min(stream.left, case.max_data_size))
        return Answer(True, None, header_slices, data_slices)
    header = Header.unpack(mem.gather(header_slices))
    # Linux and rust-vmm: a payload over max_data_size is refused.
    if header.len > case.max_data_size:
        return Answer.reject("InvalidHeaderLen", "length", f"hdr.len {header.len} > max_data_size {case.max_data_size}")
    data_slices = stream.take(header.len)
    if data_slices is None:
        return Answer.reject("DataTooShort", "length", f"hdr.len {header.len} but the chain carries fewer bytes after the header")
    return Answer(True, header, header_slices, data_slices)


class _Stream:
    """The chain's buffers as one byte stream, consumed front to back."""

    def __init__(self, chain, mem: GuestMemory, rx: bool):
        self.descs = [d for d in chain if d.len]
        self.mem = mem
        self.rx = rx
        self.i = 0    # current descriptor
        self.off = 0  # bytes of it already consumed
        self.left = sum(map(attrgetter("len"), self.descs))

    def take(self, n: int):
        """Slices for the next n bytes (cut at region boundaries), None if the stream ends first.

        Raises ChainError for a buffer of the wrong direction or outside memory.
        """
        if n > self.left:
            return None
        self.left -= n
        descs, i, off, slices = self.descs, self.i, self.off, self.mem.slices
        want = F_WRITE if self.rx else 0
        out = []
        while n:
            d = descs[i]
            # 5.10.6 / 2.7.4.1: tx buffers are device-readable, rx buffers device-writable.
            if d.flags & F_WRITE != want:
                raise ChainError(*_WRONG_DIRECTION[self.rx], f"descriptor at {d.addr:#x} is device-{'readable' if self.rx else 'writable'}")
            piece = min(n, d.len - off)
            addr = d.addr + off
            cut = slices(addr, piece)
            if cut is None:
                raise ChainError("InvalidMemoryAccess", "memory", f"buffer [{addr:#x}, +{piece:#x}) is not inside guest memory")
            out += cut
            n -= piece
            off += piece
            if off == d.len:
                i += 1
                off = 0
        self.i, self.off = i, off
        return tuple(out)


_WRONG_DIRECTION = {False: ("UnexpectedWriteOnlyDescriptor", "permission"),
                    True: ("UnexpectedReadOnlyDescriptor", "permission")}


# --- rust-vmm ------------------------------------------------------------------

def _check_queue_rust_vmm(mem: GuestMemory, ring) -> None:
    """virtio-queue's queue set-up checks, in the order an adapter meets them."""
    size = ring.size
    # Queue::try_set_size: 0, over 32768 or not a power of 2 -> InvalidSize.
    if size == 0 or size > MAX_QUEUE_SIZE or size & (size - 1):
        raise ChainError("InvalidSize", "queue", f"queue size {size} is not a power of 2 in 1..32768")
    # Queue::try_set_{desc_table,avail_ring,used_ring}_address: 16, 2 and 4-aligned.
    if ring.desc_table & 0xF:
        raise ChainError("InvalidDescTableAlign", "queue", f"descriptor table at {ring.desc_table:#x} is not 16-aligned")
    if ring.avail & 1:
        raise ChainError("InvalidAvailRingAlign", "queue", f"available ring at {ring.avail:#x} is not 2-aligned")
    if ring.used & 3:
        raise ChainError("InvalidUsedRingAlign", "queue", f"used ring at {ring.used:#x} is not 4-aligned")
    # Queue::is_valid checks only that the address one past each ring
    # (`addr.checked_add(size)`) is mapped: a ring ending exactly at the end
    # of memory is refused, a ring starting in a hole is not.
    for name, end in (("descriptor table", ring.desc_table + DESC_SIZE * size),
                      ("available ring", ring.avail + 6 + 2 * size),
                      ("used ring", ring.used + 6 + 8 * size)):
        if end >= U64 or mem.region_index(end) < 0:
            raise ChainError("RingOutOfMemory", "queue", f"Queue::is_valid: {name} end {end:#x} is not a mapped address")
    # QueueOwnedT::iter: an available ring at address 0 means "not set up".
    if ring.avail == 0:
        raise ChainError("QueueNotReady", "queue", "available ring address is 0")


def _pop_head_rust_vmm(mem: GuestMemory, ring) -> int:
    """Queue::pop_descriptor_chain: the head index as the available ring holds it.

    The adapter pops as a device does, so the head is the le16 at avail+4
    (the harness wrote it; it equals `ring.head` modulo 2^16), and no bound
    is checked here: `DescriptorChain::new` takes it as is.
    """
    # Queue::avail_idx and AvailIter::next use GuestMemory::load, an aligned
    # atomic access inside one region; a failed load pops no chain.
    for at in (ring.avail + 2, ring.avail + 4):
        if mem.region_index(at) < 0 or at + 2 > mem.region_end(at):
            raise ChainError("RingOutOfMemory", "queue", f"available ring field at {at:#x} cannot be loaded")
    idx = int.from_bytes(mem.read(ring.avail + 2, 2), "little")
    # AvailIter::new: more chains offered than the queue holds.
    if idx > ring.size:
        raise ChainError("InvalidAvailRingIndex", "queue", f"available index {idx} > queue size {ring.size}")
    if idx == 0:
        raise ChainError("NoAvailableChain", "queue", "available index 0: nothing to pop")
    return int.from_bytes(mem.read(ring.avail + 4, 2), "little")


def _parse_rust_vmm(case: Case, mem: GuestMemory, tables: bool = True) -> Answer:
    ring = case.ring
    # virtio-queue: yielded bytes are a u32; INDIRECT with NEXT is not checked.
    chain = walk(mem, ring.desc_table, ring.size, _pop_head_rust_vmm(mem, ring),
                 max_chain_bytes=0xFFFFFFFF, reject_indirect_next=False, tables=tables)
    rx = case.queue == "rx"
    head = _next_or_short(chain)
    if head.writable != rx:
        return Answer.reject(*_WRONG_DIRECTION[rx], "the head descriptor has the wrong direction")
    if head.len < HEADER_SIZE:
        return Answer.reject("DescriptorLengthTooSmall", "length", f"head descriptor len {head.len} < {HEADER_SIZE}")
    header_slice = _single_slice(mem, head.addr, HEADER_SIZE)
    if rx:
        if not head.has_next and head.len > HEADER_SIZE:
            data = _single_slice(mem, _after_header(head.addr), head.len - HEADER_SIZE)
        else:
            if not head.has_next:
                raise ChainError("DescriptorChainTooShort", "chain", "a lone 44-byte rx head leaves no room for data")
            desc = _next_or_short(chain)
            if not desc.writable:
                return Answer.reject("UnexpectedReadOnlyDescriptor", "permission", "the data descriptor is device-readable")
            if desc.len > case.max_data_size:
                return Answer.reject("DescriptorLengthTooLong", "length", f"data descriptor len {desc.len} > max_data_size {case.max_data_size}")
            data = _single_slice(mem, desc.addr, desc.len)
        return Answer(True, None, header_slice, data)
    header = Header.unpack(mem.read(head.addr, HEADER_SIZE))
    if header.len == 0:
        return Answer(True, header, header_slice, ())
    if header.len > case.max_data_size:
        return Answer.reject("InvalidHeaderLen", "length", f"hdr.len {header.len} > max_data_size {case.max_data_size}")
    if not head.has_next and head.len - HEADER_SIZE >= header.len:
        data = _single_slice(mem, _after_header(head.addr), header.len)
    else:
        if not head.has_next:
            raise ChainError("DescriptorChainTooShort", "chain", "the head has no NEXT and is too short for the data")
        desc = _next_or_short(chain)
        if desc.writable:
            return Answer.reject("UnexpectedWriteOnlyDescriptor", "permission", "the data descriptor is device-writable")
        if desc.len < header.len:
            return Answer.reject("DescriptorLengthTooSmall", "length", f"data descriptor len {desc.len} < hdr.len {header.len}")
        data = _single_slice(mem, desc.addr, header.len)
    return Answer(True, header, header_slice, data)


def _next_or_short(chain):
    # virtio-queue's iterator ends (None) on any chain error: the crate sees a short chain.
    try:
        return next(chain)
    except StopIteration:
        raise ChainError("DescriptorChainTooShort", "chain", "the chain ends before the packet does") from None
    except ChainError as e:
        raise ChainError("DescriptorChainTooShort", "chain", f"the chain ends early: {e.detail}") from None


def _after_header(addr: int) -> int:
    # packet.rs: `chain_head.addr().checked_add(PKT_HEADER_SIZE)` overflowing
    # u64 is reported as DescriptorLengthTooSmall.
    if addr + HEADER_SIZE >= U64:
        raise ChainError("DescriptorLengthTooSmall", "length", f"head address {addr:#x} + {HEADER_SIZE} overflows u64")
    return addr + HEADER_SIZE


def _single_slice(mem: GuestMemory, addr: int, n: int):
    """virtio-vsock get_single_slice: None for n == 0, else one host slice.

    vm-memory's slice iterator fails on an unmapped start (InvalidMemoryAccess)
    and otherwise yields the part up to the region's end; a shorter first
    slice (region crossing, a hole, or past 2^64) is FragmentedMemory.
    """
    if n == 0:
        return ()
    if mem.region_index(addr) < 0:
        raise ChainError("InvalidMemoryAccess", "memory", f"[{addr:#x}, +{n:#x}) starts outside guest memory")
    if addr + n > mem.region_end(addr):
        raise ChainError("FragmentedMemory", "memory", f"[{addr:#x}, +{n:#x}) crosses the end of its memory region")
    return ((addr, n),)
