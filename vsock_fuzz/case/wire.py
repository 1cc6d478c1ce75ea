"""The byte formats a case is made of: the split-virtqueue descriptor (virtio spec
2.7.5) and the 44-byte virtio-vsock packet header (5.10.6).

They live with the case because the case's encoders write them; the model reads them."""

from __future__ import annotations

import struct
from typing import NamedTuple

# 2.7.5: le64 addr, le32 len, le16 flags, le16 next
DESC_SIZE = 16
DESC_STRUCT = struct.Struct("<QIHH")

F_NEXT = 1
F_WRITE = 2
F_INDIRECT = 4


def pack_descriptor(addr: int, length: int, flags: int, next_: int) -> bytes:
    return DESC_STRUCT.pack(addr, length, flags, next_)


HEADER_SIZE = 44
HEADER_STRUCT = struct.Struct("<QQIIIHHIII")
assert HEADER_STRUCT.size == HEADER_SIZE

# type (5.10.6)
TYPE_STREAM = 1
TYPE_SEQPACKET = 2

# op (5.10.6)
OP_INVALID = 0
OP_REQUEST = 1
OP_RESPONSE = 2
OP_RST = 3
OP_SHUTDOWN = 4
OP_RW = 5
OP_CREDIT_UPDATE = 6
OP_CREDIT_REQUEST = 7

# flags: SHUTDOWN carries RCV/SEND, SEQPACKET RW carries EOM/EOR
SHUTDOWN_RCV = 1
SHUTDOWN_SEND = 2
SEQ_EOM = 1
SEQ_EOR = 2

# Well-known CIDs
CID_HYPERVISOR = 0
CID_LOCAL = 1
CID_HOST = 2
CID_ANY = 0xFFFFFFFF

# Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE; rust-vmm and Firecracker use the same.
MAX_PKT_BUF_SIZE = 64 * 1024

FIELD_NAMES = ("src_cid", "dst_cid", "src_port", "dst_port", "len", "type",
               "op", "flags", "buf_alloc", "fwd_cnt")
FIELD_WIDTHS = (64, 64, 32, 32, 32, 16, 16, 32, 32, 32)


class Header(NamedTuple):
    src_cid: int = 3
    dst_cid: int = CID_HOST
    src_port: int = 1024
    dst_port: int = 1024
    len: int = 0
    type: int = TYPE_STREAM
    op: int = OP_RW
    flags: int = 0
    buf_alloc: int = 262144
    fwd_cnt: int = 0

    def pack(self) -> bytes:
        return HEADER_STRUCT.pack(*self)

    @classmethod
    def unpack(cls, raw: bytes) -> "Header":
        return cls._make(HEADER_STRUCT.unpack(raw))

    @classmethod
    def from_json(cls, obj: dict) -> "Header":
        """A header from the protocol's `header` object; raises ValueError if malformed."""
        if not isinstance(obj, dict):
            raise ValueError("header is not an object")
        values = []
        for name, bits in zip(FIELD_NAMES, FIELD_WIDTHS):
            v = obj.get(name)
            if type(v) is not int or not 0 <= v < (1 << bits):
                raise ValueError(f"header field {name!r} is not a u{bits}: {v!r}")
            values.append(v)
        return cls._make(values)

    def to_json(self) -> dict:
        return self._asdict()
