"""A small vsock device parser, written apart from the model, that each zoo target breaks once.

It behaves as Firecracker's and rust-vmm virtio-vsock's (since 0.2.1) do:
the header sits in the head descriptor; the payload follows it in a lone
head, or fills exactly one more descriptor; every buffer must be one host
slice (inside one region). The whole chain is walked first, with the
queue-size ttl, indirect tables and the spec's chain rules. It is its own
code on purpose (own memory view, own descriptor reads, own header decode),
so a zoo bug sits where such a bug sits in a real device.

Each rule is one method (Rules), so a zoo module overrides the one its bug
breaks; ChainWalk walks the chain, SimpleDevice turns it into a packet.
"""

from __future__ import annotations

import struct
import sys

from ..model.answer import Answer, error_class
from ..case.wire import Header
from ..targets.serve import serve

HDR = struct.Struct("<QQIIIHHIII")
DESC = struct.Struct("<QIHH")
NEXT, WRITE, INDIRECT = 1, 2, 4


class Reject(Exception):
    def __init__(self, name: str, detail: str):
        super().__init__(detail)
        self.name = name


class Hung(Exception):
    """The in-process stand-in for a device that never returns (see `SimpleDevice.step_limit`)."""


class Host:
    """Guest memory as the device's host sees it: regions mapped one by one."""

    def __init__(self, case):
        self.regions = sorted(case.regions)
        self.writes = case.writes

    def region(self, addr: int):
        for r in self.regions:
            if r.gpa <= addr < r.gpa + r.size:
                return r
        return None

    def covered(self, addr: int, n: int) -> bool:
        """[addr, addr+n) is mapped, possibly over adjacent regions (the device reads rings piecewise)."""
        end = addr + n
        if end > 1 << 64:
            return False
        while addr < end:
            r = self.region(addr)
            if r is None:
                return False
            addr = r.gpa + r.size
        return True

    def peek(self, addr: int, n: int) -> bytes:
        """The bytes at [addr, addr+n): written bytes, zero elsewhere (what the host mapping holds)."""
        out = bytearray(n)
        end = addr + n
        for w in self.writes:
            lo, hi = max(w.gpa, addr), min(w.gpa + len(w.data), end)
            if lo < hi:
                out[lo - addr:hi - addr] = w.data[lo - w.gpa:hi - w.gpa]
        return bytes(out)


class Rules:
    """The device's checks, one method each, for SimpleDevice (whose attributes they read)."""

    def check_queue(self, host: Host, ring) -> None:
        size = ring.size
        if size == 0 or size > self.max_queue_size or size & (size - 1):
            raise Reject("InvalidQueueSize", f"queue size {size}")
        for what, addr, align, n in (("desc table", ring.desc_table, 16, 16 * size),
                                     ("avail ring", ring.avail, 2, 6 + 2 * size),
                                     ("used ring", ring.used, 4, 6 + 8 * size)):
            if addr % align:
                raise Reject("MisalignedRing", f"{what} at {addr:#x}")
            if not host.covered(addr, n):
                raise Reject("GuestMemory", f"{what} [{addr:#x}, +{n:#x}) is not mapped")

    def pop(self, host: Host, ring) -> int:
        idx = struct.unpack("<H", host.peek(ring.avail + 2, 2))[0]
        slot = (idx - 1) % ring.size  # the available ring wraps at the queue size
        host.peek(ring.avail + 4 + 2 * slot, 2)
        if ring.head >= ring.size:
            raise Reject("InvalidHead", f"head {ring.head} >= queue size {ring.size}")
        return ring.head

    def check_span(self, host: Host, addr: int, n: int) -> None:
        """A buffer is one host slice: inside one region (vm-memory get_slice)."""
        r = host.region(addr)
        if r is None or addr + n > r.gpa + r.size:
            raise Reject("GuestMemory", f"[{addr:#x}, +{n:#x}) is not one mapped slice")

    def check_direction(self, flags: int, rx: bool) -> None:
        if bool(flags & WRITE) != rx:
            raise Reject("UnwritableDescriptor" if rx else "UnreadableDescriptor",
                         f"flags {flags:#x} on the {'rx' if rx else 'tx'} queue")

    def step(self, steps: int, ttl: int) -> None:
        """One more descriptor: the chain is no longer than the queue size (spec 2.7.13.1)."""
        if steps > ttl:
            raise Reject("QueueMissingDescriptor", "chain longer than the queue (a loop?)")

    def table_size(self, n: int, ring) -> int:
        """Descriptors in an indirect table of n bytes (2.7.5.3: len/16)."""
        return n // 16

    def decode_header(self, raw: bytes) -> Header:
        return Header._make(HDR.unpack(raw))

    def check_len(self, hdr: Header, mds: int) -> None:
        if hdr.len > mds:
            raise Reject("InvalidPktLen", f"hdr.len {hdr.len} > {mds}")

    def payload(self, want: int, room: int) -> int:
        if room < want:
            raise Reject("BufDescTooSmall", f"{room} bytes for hdr.len {want}")
        return want


class ChainWalk:
    """The whole chain walked first, with the queue-size ttl (`step`), indirect tables
    (`tables`, `table_size`) and the 2^32 bound; for SimpleDevice."""

    def walk(self, host: Host, ring) -> list[tuple[int, int, int]]:
        out = []
        table, size, idx, indirect, steps = ring.desc_table, ring.size, ring.head, False, 0
        total = 0
        while True:
            steps += 1
            if self.step_limit is not None and steps > self.step_limit:
                raise Hung(f"walked {steps - 1} descriptors without reaching the chain's end")
            self.step(steps, size)
            if idx >= size:
                raise Reject("QueueMissingDescriptor", f"next {idx} >= {size}")
            self.check_span(host, table + 16 * idx, 16)
            addr, n, flags, nxt = DESC.unpack(host.peek(table + 16 * idx, 16))
            if flags & INDIRECT and self.tables:
                if indirect or flags & NEXT or n == 0 or n % 16 or n // 16 > 0xFFFF:
                    raise Reject("QueueMissingDescriptor", "bad indirect descriptor")
                table, size, idx, indirect, steps = addr, self.table_size(n, ring), 0, True, 0
                continue
            total += n
            if total > 1 << 32:
                raise Reject("QueueMissingDescriptor", "chain over 2^32 bytes")
            if len(out) < 64:  # a packet uses the first two; a long chain is walked, not kept
                out.append((addr, n, flags))
            if not flags & NEXT:
                return out
            idx = nxt


class SimpleDevice(ChainWalk, Rules):
    name = "zoo device"
    lone_head = True       # a lone head may carry header and payload (Linux >= 6.2)
    step_limit = None      # None: walk as written; else report a hang after this many steps
    device = None          # the hello `device` object it declares (docs/protocol.md); None: none
    tables = True          # follows indirect tables; False: reads an INDIRECT descriptor as a plain buffer
    max_queue_size = 32768
    max_data_size = None   # a fixed payload limit; None: the request's
    fragments = False      # tx payload in the descriptors after the head (Linux >= 6.17); False: in one

    def parse(self, case) -> Answer:
        try:
            return self._parse(case)
        except Reject as r:
            return Answer.reject(r.name, error_class(r.name), str(r))
        except Hung as h:
            return Answer.fault("hang", str(h))

    def _parse(self, case) -> Answer:
        host, ring, rx = Host(case), case.ring, case.queue == "rx"
        mds = case.max_data_size if self.max_data_size is None else self.max_data_size
        self.check_queue(host, ring)
        self.pop(host, ring)
        descs = self.walk(host, ring)
        addr, n, flags = descs[0]
        self.check_direction(flags, rx)
        if n < 44:
            raise Reject("HdrDescTooSmall", f"head descriptor of {n} bytes")
        self.check_span(host, addr, 44)
        return (self.rx_packet if rx else self.tx_packet)(host, descs, mds)

    def rx_packet(self, host: Host, descs, mds: int) -> Answer:
        """The room for data: the rest of a lone head, or the descriptor after it."""
        (addr, n, _), lone = descs[0], len(descs) == 1
        if lone and not self.lone_head:
            raise Reject("BufDescMissing", "an rx packet is a header descriptor and a data descriptor")
        if lone:
            if n == 44:
                raise Reject("BufDescMissing", "no room for data")
            daddr, dn = addr + 44, min(n - 44, mds)
        else:
            daddr, dn, dflags = descs[1]
            self.check_direction(dflags, True)
            dn = min(dn, mds)
        self.check_span(host, daddr, dn)
        return Answer(True, None, ((addr, 44),), ((daddr, dn),) if dn else ())

    def tx_packet(self, host: Host, descs, mds: int) -> Answer:
        """The header, and its payload: in a lone head, in the one descriptor after it, or
        (`fragments`) over the descriptors after it."""
        (addr, n, _), lone = descs[0], len(descs) == 1
        hslice = ((addr, 44),)
        hdr = self.decode_header(host.peek(addr, 44))
        self.check_len(hdr, mds)
        if hdr.len == 0:
            return Answer(True, hdr, hslice, ())
        if lone and not self.lone_head:
            raise Reject("BufDescMissing", "a tx packet with data is a header descriptor and a data descriptor")
        if lone:
            daddr, room = addr + 44, n - 44
        elif self.fragments:
            return Answer(True, hdr, hslice, self.fragmented(host, descs[1:], hdr.len))
        else:
            daddr, room, dflags = descs[1]
            self.check_direction(dflags, False)
        dn = self.payload(hdr.len, room)
        self.check_span(host, daddr, dn)
        return Answer(True, hdr, hslice, ((daddr, dn),) if dn else ())

    def fragmented(self, host: Host, descs, want: int) -> tuple:
        """The payload taken from the descriptors after the head, each one host slice."""
        out = []
        for daddr, dn, dflags in descs:
            if not want:
                break
            self.check_direction(dflags, False)
            take = min(dn, want)
            if take:
                self.check_span(host, daddr, take)
                out.append((daddr, take))
            want -= take
        if want:
            raise Reject("BufDescTooSmall", f"the chain carries {want} bytes fewer than hdr.len")
        return tuple(out)


def main(device: SimpleDevice) -> int:
    """Serve `device` as a protocol v1 program (python -m vsock_fuzz.zoo.<name>); with
    `--undeclared` its hello leaves the `device` object out, as a target that cannot say it."""
    declared = None if "--undeclared" in sys.argv[1:] else device.device
    return serve(device.parse, device.name, version="zoo", device=declared)


def run(device: SimpleDevice) -> None:
    sys.exit(main(device))
