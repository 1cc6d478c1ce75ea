"""TX/RX packet parsing, both profiles.

spec: virtio 1.2 2.6.4 (message framing: no assumption on the arrangement of
descriptors), 2.7.4.1 (buffer direction), 5.10.6 (the 44-byte header, tx
data is hdr.len bytes, rx buffers are device-writable). rust-vmm: virtio-vsock
0.12 packet.rs `from_tx_virtq_chain` / `from_rx_virtq_chain`, each error path.
Linux layouts: the facts file, "What real guest drivers put on the queues";
expected slices below are computed by hand from layout.assemble's rules
(queue size 256: table at 0, avail ring at 0x1000, used ring at 0x1208, data
from the next page 0x2000, each buffer 8-aligned after the previous one; an
indirect table is placed first, its entries after it).
"""

import pytest

from vsock_fuzz.case.value import Region
from vsock_fuzz.case.wire import F_INDIRECT, F_NEXT, F_WRITE
from vsock_fuzz.case.wire import HEADER_SIZE, OP_CREDIT_UPDATE, OP_RW, Header
from vsock_fuzz.case.layout import LINUX_VERSIONS, Buf, Layout, assemble, linux_rx, linux_tx
from vsock_fuzz.model.memory import U64
from vsock_fuzz.model.packet import parse

H = 0x10000   # where explicit header buffers go
D = 0x20000   # where explicit data buffers go
MEM = (Region(0, 1 << 20),)


def tx(bufs, hdr_len, **kw):
    return assemble(Layout("tx", tuple(bufs), header=Header(len=hdr_len), **kw))


def rx(bufs, **kw):
    return assemble(Layout("rx", tuple(bufs), **kw))


def accepted(answer, header_slices, data_slices):
    assert answer.ok, (answer.error, answer.detail)
    assert list(answer.header_slices) == header_slices
    assert list(answer.data_slices) == data_slices


def rejected(answer, name, kind):
    assert (answer.ok, answer.error, answer.error_class) == (False, name, kind), answer.detail


# === spec profile ===========================================================

@pytest.mark.parametrize("k", range(HEADER_SIZE + 1))
def test_spec_header_split_at_every_offset(k):
    # 2.6.4: the header is the first 44 bytes of the stream, over any descriptors
    case = tx([Buf(k, addr=H), Buf(HEADER_SIZE - k + 10, addr=D)], 10)
    a = parse(case)
    accepted(a, ([(H, k)] if k else []) + ([(D, HEADER_SIZE - k)] if k < HEADER_SIZE else []),
             [(D + HEADER_SIZE - k, 10)])
    assert a.header == Header(len=10)


def test_spec_data_in_one_byte_pieces():
    bufs = [Buf(HEADER_SIZE, addr=H)] + [Buf(1, addr=D + 2 * i) for i in range(10)]
    accepted(parse(tx(bufs, 10)), [(H, 44)], [(D + 2 * i, 1) for i in range(10)])


def test_spec_header_and_data_one_byte_each():
    bufs = [Buf(1, addr=H + 2 * i) for i in range(HEADER_SIZE + 3)]
    a = parse(tx(bufs, 3))
    accepted(a, [(H + 2 * i, 1) for i in range(44)], [(H + 88, 1), (H + 90, 1), (H + 92, 1)])
    assert a.header == Header(len=3)


def test_spec_buffer_crossing_adjacent_regions_is_cut_at_the_boundary():
    # protocol: adjacent regions are separate host mappings; every slice lies in one region
    regions = (Region(0, H + 20), Region(H + 20, 0x10000))
    a = parse(tx([Buf(HEADER_SIZE + 30, addr=H)], 30, regions=regions))
    accepted(a, [(H, 20), (H + 20, 24)], [(H + 44, 30)])
    assert a.header == Header(len=30)


def test_spec_data_crossing_adjacent_regions_is_cut_at_the_boundary():
    regions = (Region(0, D + 10), Region(D + 10, 0x100))
    accepted(parse(tx([Buf(44, addr=H), Buf(30, addr=D)], 30, regions=regions)), [(H, 44)], [(D, 10), (D + 10, 20)])


def test_spec_buffer_crossing_into_a_hole_is_rejected():
    regions = (Region(0, H + 20), Region(H + 0x1000, 0x1000))
    rejected(parse(tx([Buf(HEADER_SIZE, addr=H)], 0, regions=regions)), "InvalidMemoryAccess", "memory")
    regions = (Region(0, D + 10), Region(D + 0x100, 0x100))
    rejected(parse(tx([Buf(44, addr=H), Buf(30, addr=D)], 30, regions=regions)), "InvalidMemoryAccess", "memory")


def test_spec_buffer_wrapping_past_2_64_is_rejected():
    a = parse(tx([Buf(44, addr=H), Buf(30, addr=U64 - 10)], 30))
    rejected(a, "InvalidMemoryAccess", "memory")


@pytest.mark.parametrize("pos", range(3))
def test_spec_tx_device_writable_descriptor_in_the_packet_is_rejected(pos):
    # 2.7.4.1 / 5.10.6: tx buffers are device-readable; the device MUST NOT... read a writable one
    flags = [0, 0, 0]
    flags[pos] = F_WRITE
    bufs = [Buf(30, flags[0], H), Buf(30, flags[1], D), Buf(30, flags[2], D + 0x100)]
    rejected(parse(tx(bufs, 46)), "UnexpectedWriteOnlyDescriptor", "permission")


@pytest.mark.parametrize("pos", range(3))
def test_spec_rx_device_readable_descriptor_in_the_packet_is_rejected(pos):
    # 2.7.4.1: the device MUST NOT write to a device-readable buffer
    flags = [F_WRITE] * 3
    flags[pos] = 0
    bufs = [Buf(30, flags[0], H), Buf(30, flags[1], D), Buf(30, flags[2], D + 0x100)]
    rejected(parse(rx(bufs)), "UnexpectedReadOnlyDescriptor", "permission")


def test_spec_descriptors_past_the_packet_are_not_used():
    # tx: a writable descriptor after hdr.len bytes (2.6.4.2: writable ones come last) is fine
    accepted(parse(tx([Buf(54, addr=H), Buf(100, F_WRITE, D)], 10)), [(H, 44)], [(H + 44, 10)])
    # rx: past max_data_size the device writes nothing, so the direction there does not matter
    accepted(parse(rx([Buf(44, F_WRITE, H), Buf(100, F_WRITE, D), Buf(8, 0, D + 0x100)], max_data_size=100)),
             [(H, 44)], [(D, 100)])


def test_spec_hdr_len_at_max_data_size_is_accepted():
    accepted(parse(tx([Buf(44 + 100, addr=H)], 100, max_data_size=100)), [(H, 44)], [(H + 44, 100)])


def test_spec_hdr_len_over_max_data_size_is_rejected():
    # Linux and rust-vmm refuse a payload over max_data_size (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE)
    rejected(parse(tx([Buf(44 + 101, addr=H)], 101, max_data_size=100)), "InvalidHeaderLen", "length")


def test_spec_tx_data_shorter_than_hdr_len_is_rejected():
    rejected(parse(tx([Buf(44, addr=H), Buf(9, addr=D)], 10)), "DataTooShort", "length")


def test_spec_fewer_than_44_bytes_is_rejected():
    rejected(parse(tx([Buf(20, addr=H), Buf(23, addr=D)], 0)), "HeaderTooShort", "length")
    rejected(parse(rx([Buf(43, F_WRITE, H)])), "HeaderTooShort", "length")


def test_spec_rx_data_is_clamped_at_max_data_size():
    # decision (packet.py): the device never writes more than max_data_size of payload
    accepted(parse(rx([Buf(44 + 4096, F_WRITE, H)], max_data_size=1000)), [(H, 44)], [(H + 44, 1000)])
    accepted(parse(rx([Buf(44, F_WRITE, H), Buf(600, F_WRITE, D), Buf(600, F_WRITE, D + 0x1000)],
                      max_data_size=1000)), [(H, 44)], [(D, 600), (D + 0x1000, 400)])


def test_spec_rx_of_only_44_bytes_has_no_data():
    accepted(parse(rx([Buf(44, F_WRITE, H)])), [(H, 44)], [])


def test_spec_zero_length_descriptors_are_skipped():
    bufs = [Buf(0, addr=H - 8), Buf(44, addr=H), Buf(0, F_WRITE, D - 8), Buf(10, addr=D), Buf(0, addr=1 << 63)]
    accepted(parse(tx(bufs, 10)), [(H, 44)], [(D, 10)])


def test_spec_a_broken_chain_past_the_packet_is_rejected():
    # the spec profile walks the whole chain: a bad next index after the data still breaks the chain
    case = tx([Buf(54, F_NEXT, H, next=200)], 10, size=16)
    rejected(parse(case), "DescriptorIndexOutOfRange", "chain")


def test_spec_header_is_read_from_memory_across_pieces():
    hdr = Header(src_cid=0x1122334455, dst_cid=2, src_port=7, dst_port=9, len=3, type=2, op=5, flags=1,
                 buf_alloc=99, fwd_cnt=5)
    case = assemble(Layout("tx", (Buf(13, addr=H), Buf(31, addr=D), Buf(3, addr=D + 0x100)), header=hdr))
    assert parse(case).header == hdr


# === rust-vmm profile =========================================================

def rv(case):
    return parse(case, "rust-vmm")


def test_rust_vmm_tx_single_descriptor_form():
    # packet.rs: "Starting from Linux 6.2 ... a single descriptor for both header and data"
    accepted(rv(tx([Buf(54, addr=H)], 10)), [(H, 44)], [(H + 44, 10)])


def test_rust_vmm_tx_two_descriptor_form():
    accepted(rv(tx([Buf(44, addr=H), Buf(100, addr=D)], 10)), [(H, 44)], [(D, 10)])


def test_rust_vmm_rx_single_and_two_descriptor_forms():
    accepted(rv(rx([Buf(44 + 4096, F_WRITE, H)])), [(H, 44)], [(H + 44, 4096)])
    accepted(rv(rx([Buf(44, F_WRITE, H), Buf(4096, F_WRITE, D)])), [(H, 44)], [(D, 4096)])
    # a head with NEXT uses only 44 bytes of itself
    accepted(rv(rx([Buf(100, F_WRITE, H), Buf(64, F_WRITE, D)])), [(H, 44)], [(D, 64)])


def test_rust_vmm_rx_zero_length_data_descriptor_gives_no_data():
    # get_single_slice(count = 0) -> Ok(None)
    accepted(rv(rx([Buf(44, F_WRITE, H), Buf(0, F_WRITE, D)])), [(H, 44)], [])


def test_rust_vmm_len_zero_ends_the_packet():
    # packet.rs: `if pkt.is_empty() { return Ok(pkt) }` before the chain is walked further
    case = tx([Buf(44, F_NEXT, H, next=200)], 0, size=16)
    accepted(rv(case), [(H, 44)], [])
    rejected(parse(case), "DescriptorIndexOutOfRange", "chain")


def test_rust_vmm_walks_no_further_than_the_data_descriptor():
    case = tx([Buf(44, addr=H), Buf(10, F_NEXT, D, next=200)], 10, size=16)
    accepted(rv(case), [(H, 44)], [(D, 10)])


def test_rust_vmm_descriptor_chain_too_short():
    # no head at all (index past the queue), a tx head without NEXT too short for its data,
    # a broken next link, the lone 44-byte rx head
    rejected(rv(tx([Buf(44, addr=H)], 0, size=8, head=8)), "DescriptorChainTooShort", "chain")
    rejected(rv(tx([Buf(44 + 5, addr=H)], 10)), "DescriptorChainTooShort", "chain")
    rejected(rv(tx([Buf(44, F_NEXT, H, next=99)], 10, size=16)), "DescriptorChainTooShort", "chain")
    rejected(rv(rx([Buf(44, F_WRITE, H)])), "DescriptorChainTooShort", "chain")


def test_rust_vmm_chain_errors_are_seen_as_too_short():
    # virtio-queue's iterator returns None on a loop or a nested indirect table
    loop = tx([Buf(44, F_NEXT, H, next=0)], 10, size=1)
    rejected(rv(loop), "DescriptorChainTooShort", "chain")
    nested = tx([Buf(44, addr=H), Buf(16, F_INDIRECT, table=(Buf(16, F_INDIRECT, table=(Buf(10),)),))], 10)
    rejected(rv(nested), "DescriptorChainTooShort", "chain")
    rejected(parse(nested), "NestedIndirect", "chain")


def test_rust_vmm_descriptor_length_too_small():
    rejected(rv(tx([Buf(43, addr=H), Buf(10, addr=D)], 0)), "DescriptorLengthTooSmall", "length")
    rejected(rv(rx([Buf(43, F_WRITE, H), Buf(10, F_WRITE, D)])), "DescriptorLengthTooSmall", "length")
    rejected(rv(tx([Buf(44, addr=H), Buf(9, addr=D)], 10)), "DescriptorLengthTooSmall", "length")


def test_rust_vmm_header_split_is_rejected():
    # the header must fit the head descriptor (the limit the crate documents)
    rejected(rv(tx([Buf(20, addr=H), Buf(34, addr=D)], 10)), "DescriptorLengthTooSmall", "length")


def test_rust_vmm_head_address_plus_44_overflowing_u64():
    # packet.rs: chain_head.addr().checked_add(PKT_HEADER_SIZE).ok_or(DescriptorLengthTooSmall)
    top = U64 - HEADER_SIZE
    regions = (Region(0, 1 << 20), Region(top, HEADER_SIZE))
    t = tx([Buf(45, addr=top)], 1, regions=regions)
    rejected(rv(t), "DescriptorLengthTooSmall", "length")
    rejected(parse(t), "InvalidMemoryAccess", "memory")
    rejected(rv(rx([Buf(100, F_WRITE, top)], regions=regions)), "DescriptorLengthTooSmall", "length")


def test_rust_vmm_rx_data_descriptor_too_long():
    rejected(rv(rx([Buf(44, F_WRITE, H), Buf(101, F_WRITE, D)], max_data_size=100)), "DescriptorLengthTooLong", "length")
    accepted(rv(rx([Buf(44, F_WRITE, H), Buf(100, F_WRITE, D)], max_data_size=100)), [(H, 44)], [(D, 100)])


def test_rust_vmm_lone_rx_head_is_not_limited_by_max_data_size():
    # from_rx_virtq_chain checks max_data_size only on a separate data descriptor
    accepted(rv(rx([Buf(44 + 4096, F_WRITE, H)], max_data_size=1000)), [(H, 44)], [(H + 44, 4096)])


def test_rust_vmm_invalid_header_len():
    rejected(rv(tx([Buf(44 + 101, addr=H)], 101, max_data_size=100)), "InvalidHeaderLen", "length")
    accepted(rv(tx([Buf(44 + 100, addr=H)], 100, max_data_size=100)), [(H, 44)], [(H + 44, 100)])


def test_rust_vmm_fragmented_memory():
    adjacent = (Region(0, H + 20), Region(H + 20, 0x10000))
    rejected(rv(tx([Buf(54, addr=H)], 10, regions=adjacent)), "FragmentedMemory", "memory")
    data_adjacent = (Region(0, D + 5), Region(D + 5, 0x100))
    rejected(rv(tx([Buf(44, addr=H), Buf(10, addr=D)], 10, regions=data_adjacent)), "FragmentedMemory", "memory")
    rejected(rv(rx([Buf(44, F_WRITE, H), Buf(10, F_WRITE, D)], regions=data_adjacent)), "FragmentedMemory", "memory")
    # a shorter first slice is FragmentedMemory whatever follows: a hole, or the end of the address space
    hole = (Region(0, H + 20), Region(H + 0x1000, 0x10))
    rejected(rv(tx([Buf(54, addr=H)], 10, regions=hole)), "FragmentedMemory", "memory")
    top = (Region(0, 1 << 20), Region(U64 - 20, 20))
    rejected(rv(tx([Buf(54, addr=U64 - 20)], 10, regions=top)), "FragmentedMemory", "memory")


def test_rust_vmm_invalid_memory_access():
    rejected(rv(tx([Buf(54, addr=0x4000_0000)], 10)), "InvalidMemoryAccess", "memory")
    rejected(rv(tx([Buf(44, addr=H), Buf(10, addr=0x4000_0000)], 10)), "InvalidMemoryAccess", "memory")
    rejected(rv(rx([Buf(44, F_WRITE, H), Buf(10, F_WRITE, 0x4000_0000)])), "InvalidMemoryAccess", "memory")


def test_rust_vmm_unexpected_write_only_descriptor():
    rejected(rv(tx([Buf(54, F_WRITE, H)], 10)), "UnexpectedWriteOnlyDescriptor", "permission")
    rejected(rv(tx([Buf(44, addr=H), Buf(10, F_WRITE, D)], 10)), "UnexpectedWriteOnlyDescriptor", "permission")


def test_rust_vmm_unexpected_read_only_descriptor():
    rejected(rv(rx([Buf(100, 0, H)])), "UnexpectedReadOnlyDescriptor", "permission")
    rejected(rv(rx([Buf(44, F_WRITE, H), Buf(10, 0, D)])), "UnexpectedReadOnlyDescriptor", "permission")


def test_rust_vmm_tx_head_checks_come_before_the_chain():
    # a write-only head is reported before its length (packet.rs order)
    rejected(rv(tx([Buf(10, F_WRITE, H)], 0)), "UnexpectedWriteOnlyDescriptor", "permission")


def test_rust_vmm_more_than_one_data_descriptor_is_its_documented_gap():
    # rust-vmm vm-virtio #204 class; CH #7672 / libkrun #535 (Linux >= 6.17 multi-fragment tx)
    case = tx([Buf(44, addr=H), Buf(5, addr=D), Buf(5, addr=D + 0x100)], 10)
    rejected(rv(case), "DescriptorLengthTooSmall", "length")
    accepted(parse(case), [(H, 44)], [(D, 5), (D + 0x100, 5)])


# === Linux layouts (facts file), exact slices ===================================

FRAGS = [(0x2030 + i * 0x1000, 4096) for i in range(9)] + [(0xB030, 3136)]             # 40000 = 9*4096 + 3136
FRAGS_IND = [(0x20E0 + i * 0x1000, 4096) for i in range(9)] + [(0xB0E0, 3136)]

# (layout, expected header_slices, expected data_slices)
LINUX = {
    ("5.x", "tx", 0, False): ([(0x2000, 44)], []),
    ("5.x", "tx", 5, False): ([(0x2000, 44)], [(0x2030, 5)]),
    ("5.x", "tx", 40000, False): ([(0x2000, 44)], [(0x2030, 40000)]),
    ("6.2", "tx", 0, False): ([(0x2000, 44)], []),
    ("6.2", "tx", 5, False): ([(0x2000, 44)], [(0x202C, 5)]),
    ("6.2", "tx", 40000, False): ([(0x2000, 44)], [(0x202C, 40000)]),
    ("6.17", "tx", 5, False): ([(0x2000, 44)], [(0x202C, 5)]),
    ("6.17", "tx", 32768, False): ([(0x2000, 44)], [(0x202C, 32768)]),   # not over 32 KiB: linear
    ("6.17", "tx", 40000, False): ([(0x2000, 44)], FRAGS),
    ("5.x", "rx", None, False): ([(0x2000, 44)], [(0x2030, 4096)]),
    ("6.2", "rx", None, False): ([(0x2000, 44)], [(0x202C, 4096)]),
    ("6.17", "rx", None, False): ([(0x2000, 44)], [(0x202C, 4096)]),
    # indirect: the table of n entries at 0x2000, its buffers from 0x2000 + 16n
    ("5.x", "tx", 0, True): ([(0x2010, 44)], []),
    ("5.x", "tx", 5, True): ([(0x2020, 44)], [(0x2050, 5)]),
    ("6.2", "tx", 5, True): ([(0x2010, 44)], [(0x203C, 5)]),
    ("6.17", "tx", 5, True): ([(0x2010, 44)], [(0x203C, 5)]),
    ("6.17", "tx", 40000, True): ([(0x20B0, 44)], FRAGS_IND),
    ("5.x", "rx", None, True): ([(0x2020, 44)], [(0x2050, 4096)]),
    ("6.2", "rx", None, True): ([(0x2010, 44)], [(0x203C, 4096)]),
    ("6.17", "rx", None, True): ([(0x2010, 44)], [(0x203C, 4096)]),
}


def linux_layout(version, queue, payload, indirect):
    return linux_tx(version, payload, indirect=indirect) if queue == "tx" else linux_rx(version, indirect=indirect)


def test_every_linux_version_is_covered():
    assert {k[0] for k in LINUX} == set(LINUX_VERSIONS)
    assert {(k[1], k[3]) for k in LINUX} == {("tx", False), ("tx", True), ("rx", False), ("rx", True)}


@pytest.mark.parametrize("key", list(LINUX), ids=lambda k: "-".join(map(str, k)))
def test_spec_accepts_linux_layout_with_exact_slices(key):
    version, queue, payload, indirect = key
    a = parse(assemble(linux_layout(*key)))
    accepted(a, *LINUX[key])
    if queue == "tx":
        # What Linux sends with that payload: RW with data, CREDIT_UPDATE without.
        assert a.header == Header(len=payload, op=OP_RW if payload else OP_CREDIT_UPDATE)
    else:
        assert a.header is None


@pytest.mark.parametrize("key", list(LINUX), ids=lambda k: "-".join(map(str, k)))
def test_rust_vmm_on_linux_layouts(key):
    version, queue, payload, indirect = key
    a = rv(assemble(linux_layout(*key)))
    if version == "6.17" and queue == "tx" and payload > 32768:
        # its documented gap: the payload in several page fragments (CH #7672, libkrun #535)
        rejected(a, "DescriptorLengthTooSmall", "length")
        return
    header_slices, data_slices = LINUX[key]
    # the crate hands out one slice for the data: the spec's slices, when there is one
    accepted(a, header_slices, data_slices)
