"""The split-virtqueue chain walk and queue set-up (virtio 1.2, 2.7).

Each test names the rule it checks. Chains are written as raw descriptors
(addr, len, flags, next) into a descriptor table so every field is explicit.
"""

import pytest

from vsock_fuzz.case.value import Case, Region, Ring, Write
from vsock_fuzz.case.wire import F_INDIRECT, F_NEXT, F_WRITE, pack_descriptor
from vsock_fuzz.model.chain import MAX_QUEUE_SIZE, SPEC_MAX_CHAIN_BYTES, ChainError, Walked, check_queue, walk
from vsock_fuzz.case.wire import HEADER_SIZE
from vsock_fuzz.case.layout import Buf, Layout, assemble
from vsock_fuzz.model.memory import GuestMemory
from vsock_fuzz.model.packet import parse

TABLE = 0x1000
MEM = (Region(0, 1 << 20),)
RUST_VMM_U32 = 0xFFFFFFFF  # virtio-queue DescriptorChain::yielded_bytes is a u32


def table_mem(descs, at=TABLE, regions=MEM, extra=()):
    data = b"".join(pack_descriptor(*d) for d in descs)
    return GuestMemory(regions, [Write(at, data), *extra])


def run(descs, size=8, head=0, at=TABLE, regions=MEM, extra=(), **kw):
    """The walked (addr, len, flags) list, or ("error", name) at the first broken rule."""
    mem = table_mem(descs, at, regions, extra)
    out = []
    try:
        for d in walk(mem, at, size, head, **kw):
            out.append((d.addr, d.len, d.flags))
    except ChainError as e:
        return out, e.name
    return out, None


# --- chain walk: NEXT, ttl, index, readability (2.7.5, 2.7.13.1) ------------

def test_chain_follows_next_until_a_descriptor_without_next():
    descs = [(0x10000, 10, F_NEXT, 2), (0, 0, 0, 0), (0x20000, 20, 0, 7)]
    assert run(descs) == ([(0x10000, 10, F_NEXT), (0x20000, 20, 0)], None)


def test_chain_head_other_than_zero():
    descs = [(0, 0, 0, 0), (0, 0, 0, 0), (0x30000, 5, 0, 0)]
    assert run(descs, head=2) == ([(0x30000, 5, 0)], None)


def test_ttl_equals_queue_size_so_a_loop_is_detected():
    # 2.7.13.1: a chain is no longer than the queue size; rust-vmm's ttl = queue size
    descs = [(0x10000, 1, F_NEXT, 1), (0x10000, 1, F_NEXT, 0)]
    out, err = run(descs, size=4)
    assert err == "ChainTooLong" and len(out) == 4


def test_loop_in_an_invalid_huge_queue_is_bounded_by_the_16_bit_index():
    # `next` is a le16: a walk past 2^16 steps repeats itself even when the queue size
    # (invalid, as the oracles' lenient walk may see it) is 2^40
    out, err = run([(0x10000, 1, F_NEXT, 0)], size=1 << 40)
    assert (len(out), err) == (1 << 16, "ChainTooLong")


def test_a_loop_is_walked_step_by_step_each_read_logged():
    # The walk replays a loop from the descriptors it read (memory does not change meanwhile):
    # the same buffers in the same order as reading them again, and one logged read per step.
    descs = [(0x10000, 10, F_NEXT, 1), (0x20000, 20, F_NEXT, 2), (0x30000, 30, F_NEXT, 1)]  # 0, 1, 2, 1, 2, ...
    out, err = run(descs, size=8)
    assert err == "ChainTooLong"
    assert [n for _, n, _ in out] == [10, 20, 30, 20, 30, 20, 30, 20]
    mem = table_mem(descs)
    with pytest.raises(ChainError):
        list(walk(mem, TABLE, 8, 0))
    assert [gpa for _, gpa, _ in mem.log] == [TABLE + 16 * i for i in (0, 1, 2, 1, 2, 1, 2, 1)]


def test_a_loop_that_reaches_the_byte_bound_first_is_too_large():
    descs = [(0x10000, 10, F_NEXT, 1), (0x20000, 20, F_NEXT, 2), (0x30000, 30, F_NEXT, 1)]
    out, err = run(descs, size=8, max_chain_bytes=95)  # 10, 30, 60, 80, then 110 > 95
    assert (len(out), err) == (4, "ChainTooLarge")


def test_a_loop_inside_an_indirect_table_follows_the_table_indexes():
    # Index 1 of the table is not index 1 of the queue: the loop is the table's own.
    table = [(0x20000, 1, F_NEXT, 1), (0x30000, 2, F_NEXT, 2), (0x40000, 3, F_NEXT, 1)]
    table.append((0x60000, 4, 0, 0))  # never reached: 4 entries, so the loop is walked once more
    out, err = run([(IND, 64, F_INDIRECT, 0), (0x50000, 9, 0, 0)], extra=[ind_table(table)])
    assert ([n for _, n, _ in out], err) == ([1, 2, 3, 2], "ChainTooLong")


def test_walked_keeps_the_buffers_a_broken_chain_yielded_before_its_error():
    # The oracles judge a target's slices against the buffers the walk reached.
    descs = [(0x10000, 10, F_NEXT, 1), (0x20000, 20, F_NEXT, 9)]  # index 9 >= queue size 8
    case = Case("tx", 0, MEM, (Write(TABLE, b"".join(pack_descriptor(*d) for d in descs)),),
                Ring(8, TABLE, 0x2000, 0x3000, 0))
    got, err = Walked(case).chain
    assert [(d.addr, d.len) for d in got] == [(0x10000, 10), (0x20000, 20)]
    assert err.name == "DescriptorIndexOutOfRange"


def test_chain_of_exactly_queue_size_descriptors_is_accepted():
    descs = [(0x10000 + i, 1, F_NEXT, i + 1) for i in range(3)] + [(0x10003, 1, 0, 0)]
    out, err = run(descs, size=4)
    assert err is None and len(out) == 4


def test_self_loop_on_queue_size_1():
    out, err = run([(0x10000, 1, F_NEXT, 0)], size=1)
    assert (len(out), err) == (1, "ChainTooLong")


def test_next_index_at_or_past_queue_size_is_rejected():
    # 2.7.5: next must index the descriptor table
    out, err = run([(0x10000, 1, F_NEXT, 8)], size=8)
    assert (out, err) == ([(0x10000, 1, F_NEXT)], "DescriptorIndexOutOfRange")
    assert run([(0x10000, 1, F_NEXT, 7)] + [(0, 0, 0, 0)] * 7, size=8)[1] is None


def test_next_is_not_followed_without_the_next_flag():
    assert run([(0x10000, 1, 0, 0xFFFF)], size=8) == ([(0x10000, 1, 0)], None)


def test_unreadable_descriptor_is_rejected():
    # the table runs off the end of memory: descriptor 2 is unmapped
    regions = (Region(0, TABLE + 32),)
    descs = [(0x100, 1, F_NEXT, 1), (0x100, 1, F_NEXT, 2)]
    assert run(descs, regions=regions) == ([(0x100, 1, F_NEXT)] * 2, "DescriptorUnreadable")


def test_descriptor_straddling_two_adjacent_regions_is_readable():
    # guest-physical memory is one space; a 16-byte read may span two host mappings
    regions = (Region(0, TABLE + 8), Region(TABLE + 8, 0x1000))
    assert run([(0x100, 3, 0, 0)], regions=regions) == ([(0x100, 3, 0)], None)


def test_walk_is_lazy_errors_surface_only_when_reached():
    mem = table_mem([(0x100, 1, F_NEXT, 99)])
    it = walk(mem, TABLE, 8, 0)
    assert next(it).len == 1
    with pytest.raises(ChainError):
        next(it)


# --- indirect descriptors (2.7.5.3) ------------------------------------------

IND = 0x8000  # where indirect tables live


def ind_table(descs):
    return Write(IND, b"".join(pack_descriptor(*d) for d in descs))


def test_indirect_table_is_walked_in_place():
    table = [(0x10000, 44, F_NEXT, 1), (0x20000, 5, 0, 0)]
    out, err = run([(IND, 32, F_INDIRECT, 0)], extra=[ind_table(table)])
    assert (out, err) == ([(0x10000, 44, F_NEXT), (0x20000, 5, 0)], None)


def test_direct_descriptors_then_one_indirect():
    # 2.7.5.3.2: the device MUST handle zero or more direct descriptors followed by one indirect one
    table = [(0x20000, 7, 0, 0)]
    descs = [(0x10000, 44, F_NEXT, 1), (IND, 16, F_INDIRECT, 0)]
    assert run(descs, extra=[ind_table(table)]) == ([(0x10000, 44, F_NEXT), (0x20000, 7, 0)], None)


def test_nested_indirect_is_rejected():
    # 2.7.5.3.1: the driver MUST NOT set INDIRECT inside an indirect table (one level only)
    table = [(IND, 16, F_INDIRECT, 0)]
    assert run([(IND, 16, F_INDIRECT, 0)], extra=[ind_table(table)])[1] == "NestedIndirect"


@pytest.mark.parametrize("length", [0, 8, 15, 17, 40])
def test_indirect_table_length_must_be_a_non_zero_multiple_of_16(length):
    # 2.7.5.3: the table holds len/16 descriptors; virtio-queue rejects len % 16 != 0
    assert run([(IND, length, F_INDIRECT, 0)], extra=[ind_table([(0x100, 1, 0, 0)] * 3)])[1] == "InvalidIndirectTable"


def test_indirect_table_of_more_than_u16_max_entries_is_rejected():
    # virtio-queue: table_len > u16::MAX -> InvalidIndirectDescriptorTable
    assert run([(IND, 16 * 0x10000, F_INDIRECT, 0)])[1] == "InvalidIndirectTable"


def test_indirect_with_next_is_rejected_under_spec():
    # 2.7.5.3.1: the driver MUST NOT set both INDIRECT and NEXT
    descs = [(IND, 16, F_INDIRECT | F_NEXT, 1), (0x30000, 9, 0, 0)]
    assert run(descs, extra=[ind_table([(0x20000, 7, 0, 0)])])[1] == "IndirectWithNext"


def test_indirect_with_next_walks_the_table_then_ends_under_rust_vmm():
    # virtio-queue chain.rs test_new_from_indirect_descriptor: NEXT is ignored, descriptor 1 never seen
    descs = [(IND, 16, F_INDIRECT | F_NEXT, 1), (0x30000, 9, 0, 0)]
    out, err = run(descs, extra=[ind_table([(0x20000, 7, 0, 0)])], reject_indirect_next=False)
    assert (out, err) == ([(0x20000, 7, 0)], None)


def test_write_flag_on_the_table_descriptor_is_ignored():
    # 2.7.5.3.2: the device MUST ignore WRITE on the descriptor that refers to the table
    out, err = run([(IND, 16, F_INDIRECT | F_WRITE, 0)], extra=[ind_table([(0x20000, 7, 0, 0)])])
    assert (out, err) == ([(0x20000, 7, 0)], None)


def test_indirect_table_ttl_is_its_own_size():
    table = [(0x20000, 1, F_NEXT, 1), (0x20000, 1, F_NEXT, 0)]
    out, err = run([(IND, 32, F_INDIRECT, 0)], extra=[ind_table(table)])
    assert (len(out), err) == (2, "ChainTooLong")


def test_next_past_the_indirect_table_is_rejected():
    out, err = run([(IND, 16, F_INDIRECT, 0)], extra=[ind_table([(0x20000, 1, F_NEXT, 1)])])
    assert (len(out), err) == (1, "DescriptorIndexOutOfRange")


def test_unaligned_indirect_table_is_accepted():
    # virtio-queue 0.7.1 dropped a spurious alignment check on the table address
    w = Write(IND + 1, pack_descriptor(0x20000, 7, 0, 0))
    assert run([(IND + 1, 16, F_INDIRECT, 0)], extra=[w]) == ([(0x20000, 7, 0)], None)


def test_unreadable_indirect_table_is_rejected():
    assert run([(0x200000, 16, F_INDIRECT, 0)])[1] == "DescriptorUnreadable"


# --- the 2^32 total bound (2.7.5.2 / 2.7.13.1) -------------------------------

def test_chain_of_exactly_2_32_bytes_is_accepted_under_spec():
    descs = [(0x10000, 0xFFFFFFFF, F_NEXT, 1), (0x10000, 1, 0, 0)]
    out, err = run(descs)
    assert err is None and sum(d[1] for d in out) == SPEC_MAX_CHAIN_BYTES


def test_chain_of_2_32_plus_1_bytes_is_rejected_under_spec():
    # "Drivers MUST NOT add a descriptor chain longer than 2^32 bytes in total"
    descs = [(0x10000, 0xFFFFFFFF, F_NEXT, 1), (0x10000, 2, 0, 0)]
    out, err = run(descs)
    assert (len(out), err) == (1, "ChainTooLarge")  # the overflowing descriptor is not yielded


def test_rust_vmm_bound_is_u32_yielded_bytes():
    # virtio-queue: yielded_bytes.checked_add(len) on a u32 ends the chain at 2^32 exactly
    ok = [(0x10000, 0xFFFFFFFE, F_NEXT, 1), (0x10000, 1, 0, 0)]
    assert run(ok, max_chain_bytes=RUST_VMM_U32)[1] is None
    bad = [(0x10000, 0xFFFFFFFF, F_NEXT, 1), (0x10000, 1, 0, 0)]
    assert run(bad, max_chain_bytes=RUST_VMM_U32) == ([(0x10000, 0xFFFFFFFF, F_NEXT)], "ChainTooLarge")


def test_2_32_bound_counts_indirect_entries():
    table = [(0x20000, 0xFFFFFFFF, F_NEXT, 1), (0x20000, 2, 0, 0)]
    assert run([(IND, 32, F_INDIRECT, 0)], extra=[ind_table(table)])[1] == "ChainTooLarge"


# --- queue set-up (2.7: size, alignment; the ring in memory; the head) ---------

def lay_case(size=8, queue="tx", **kw):
    bufs = (Buf(HEADER_SIZE),) if queue == "tx" else (Buf(HEADER_SIZE + 16, F_WRITE),)
    return assemble(Layout(queue, bufs, size=size, **kw))


def with_ring(case, **fields):
    return case._replace(ring=case.ring._replace(**fields))


@pytest.mark.parametrize("size", [1, 2, 256, MAX_QUEUE_SIZE])
def test_power_of_2_queue_sizes_up_to_32768_are_valid(size):
    case = lay_case(size=size, regions=(Region(0, 1 << 20),))
    assert parse(case).ok and parse(case, "rust-vmm").ok


@pytest.mark.parametrize("size", [0, 3, 6, 32767, 65536, 1 << 20])
def test_invalid_queue_sizes_are_rejected(size):
    # 2.7: a power of 2, at most 32768; 0 divided by zero in virtio-queue (#173)
    case = with_ring(lay_case(), size=size)
    a = parse(case)
    assert (a.ok, a.error, a.error_class) == (False, "InvalidQueueSize", "queue")
    r = parse(case, "rust-vmm")
    assert (r.ok, r.error, r.error_class) == (False, "InvalidSize", "queue")  # Queue::try_set_size


def test_queue_size_1_with_a_one_descriptor_chain():
    case = assemble(Layout("tx", (Buf(HEADER_SIZE),), size=1))
    assert parse(case).ok and parse(case, "rust-vmm").ok


@pytest.mark.parametrize("field, offset, spec_align, rust_name", [
    ("desc_table", 8, 16, "InvalidDescTableAlign"),
    ("avail", 1, 2, "InvalidAvailRingAlign"),
    ("used", 2, 4, "InvalidUsedRingAlign"),
])
def test_misaligned_rings_are_rejected(field, offset, spec_align, rust_name):
    # 2.7 (alignment table): descriptor table 16, available ring 2, used ring 4
    case = lay_case()
    case = with_ring(case, **{field: getattr(case.ring, field) + offset})
    a = parse(case)
    assert (a.error, a.error_class) == ("MisalignedRing", "queue") and str(spec_align) in a.detail
    assert parse(case, "rust-vmm").error == rust_name  # Queue::try_set_*_address


@pytest.mark.parametrize("field", ["desc_table", "avail", "used"])
def test_rings_outside_memory_are_rejected(field):
    case = with_ring(lay_case(), **{field: 0x4000_0000})
    assert parse(case).error == "RingOutOfMemory"
    assert parse(case, "rust-vmm").error == "RingOutOfMemory"


def test_ring_crossing_adjacent_regions_is_valid_under_spec():
    # the rings are guest-physical ranges; adjacent regions make one range
    regions = (Region(0, 0x1008), Region(0x1008, 0x100000))  # 256-entry table ends at 0x1000
    case = lay_case(size=256, regions=regions, desc_table=0x800)
    assert parse(case).ok


def test_rust_vmm_is_valid_checks_the_address_one_past_each_ring():
    # virtio-queue Queue::is_valid: `addr.checked_add(size)` must be a mapped address
    case = lay_case(size=8)
    used_end = case.ring.used + 6 + 8 * 8
    exact = case._replace(regions=(Region(0, used_end),))
    assert parse(exact).error != "RingOutOfMemory"  # spec: the whole ring is inside memory
    assert parse(exact, "rust-vmm").error == "RingOutOfMemory"
    one_more = case._replace(regions=(Region(0, used_end + 1),))
    assert parse(one_more, "rust-vmm").error != "RingOutOfMemory"


def test_rust_vmm_avail_ring_at_address_0_is_not_ready():
    # virtio-queue QueueOwnedT::iter: avail_ring == 0 -> QueueNotReady
    case = lay_case(desc_table=0x1000)
    case = with_ring(case, avail=0)
    case = case._replace(writes=case.writes + (Write(0, bytes((0, 0, 1, 0, 0, 0))),))
    assert parse(case, "rust-vmm").error == "QueueNotReady"
    assert parse(case).ok


def test_rust_vmm_pops_the_head_from_the_available_ring():
    # an adapter pops as a device does: head = avail.ring[0], idx must be 1..size
    case = lay_case()
    avail = case.ring.avail
    empty = case._replace(writes=case.writes + (Write(avail + 2, b"\0\0"),))
    assert parse(empty, "rust-vmm").error == "NoAvailableChain"
    too_many = case._replace(writes=case.writes + (Write(avail + 2, b"\x09\0"),))
    assert parse(too_many, "rust-vmm").error == "InvalidAvailRingIndex"


@pytest.mark.parametrize("head", [8, 9, 0xFFFF, (1 << 40) + 8])
def test_head_out_of_range(head):
    # spec: the available ring names a descriptor of the table; rust-vmm: DescriptorChain::new takes the
    # index unchecked and its first next() returns None -> DescriptorChainTooShort
    case = assemble(Layout("tx", (Buf(HEADER_SIZE),), size=8, head=head))
    a = parse(case)
    assert (a.error, a.error_class) == ("InvalidHead", "queue")
    r = parse(case, "rust-vmm")
    assert (r.error, r.error_class) == ("DescriptorChainTooShort", "chain")


def test_rust_vmm_head_is_the_16_bit_value_in_the_ring():
    # ring.head = 2^16 is written as le16 0: a popping device walks descriptor 0
    case = assemble(Layout("tx", (Buf(HEADER_SIZE),), size=8, head=1 << 16))
    assert parse(case).error == "InvalidHead"
    assert parse(case, "rust-vmm").ok


def test_check_queue_accepts_the_assembled_layout():
    case = lay_case()
    check_queue(GuestMemory(case.regions, case.writes), case.ring)  # does not raise


def test_rust_vmm_is_valid_does_not_check_where_a_ring_starts():
    # Queue::is_valid looks only at the address one past the ring: a descriptor table
    # starting in a hole passes it, and the chain walk then finds no descriptor
    case = lay_case(size=8, desc_table=0x1000)
    hole = case._replace(regions=(Region(0, 0x1000), Region(0x1010, 0x100000 - 0x1010)))
    assert parse(hole).error == "RingOutOfMemory"
    r = parse(hole, "rust-vmm")
    assert (r.error, r.error_class) == ("DescriptorChainTooShort", "chain")


def test_rust_vmm_available_ring_fields_are_loaded_from_one_region():
    # GuestMemory::load (Queue::avail_idx, AvailIter::next) is an atomic access inside one
    # region: ring[0] straddling two adjacent regions pops nothing; the spec profile reads ring.head
    case = lay_case(size=8)
    at = case.ring.avail + 4
    split = case._replace(regions=(Region(0, at + 1), Region(at + 1, 0x100000 - at - 1)))
    assert parse(split, "rust-vmm").error == "RingOutOfMemory"
    assert parse(split).ok
