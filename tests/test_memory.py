"""GuestMemory: regions, holes, sparse contents, clean faults, the access log.

Rule source: docs/protocol.md ("memory": each region is its own host
mapping, everything else is unmapped; "writes" applied in order).
"""

import pytest

from vsock_fuzz.case.value import Region, Write
from vsock_fuzz.model.memory import U64, GuestMemory, MemoryFault

# Two adjacent regions [0x1000, 0x3000) and [0x3000, 0x4000), a hole, then [0x8000, 0x9000).
REGIONS = (Region(0x8000, 0x1000), Region(0x1000, 0x2000), Region(0x3000, 0x1000))


def mem(writes=()):
    return GuestMemory(REGIONS, writes)


def test_region_index_in_gpa_order_and_holes():
    m = mem()
    assert m.region_index(0x1000) == 0
    assert m.region_index(0x2FFF) == 0
    assert m.region_index(0x3000) == 1
    assert m.region_index(0x8FFF) == 2
    for hole in (0, 0xFFF, 0x4000, 0x7FFF, 0x9000, U64 - 1):
        assert m.region_index(hole) == -1, hex(hole)


def test_slices_cut_at_adjacent_region_boundary():
    # protocol: adjacent regions are separate host mappings, so one slice per region
    assert mem().slices(0x2FF0, 0x20) == [(0x2FF0, 0x10), (0x3000, 0x10)]


def test_slices_inside_one_region_are_one_piece():
    assert mem().slices(0x1004, 0x100) == [(0x1004, 0x100)]


def test_slices_into_a_hole_are_none():
    m = mem()
    assert m.slices(0x3FF0, 0x20) is None   # runs off the end into the hole
    assert m.slices(0x7FF0, 0x20) is None   # starts in the hole
    assert m.slices(0x5000, 1) is None


def test_slices_wrapping_past_2_64_are_none():
    m = GuestMemory((Region(U64 - 0x1000, 0x1000),))
    assert m.slices(U64 - 0x10, 0x10) == [(U64 - 0x10, 0x10)]
    assert m.slices(U64 - 0x10, 0x11) is None
    assert m.slices(U64 - 1, U64) is None
    assert not m.contains(U64 - 1, 2)


def test_zero_length_access_is_contained_anywhere():
    assert mem().contains(0x5000, 0)
    assert mem().read(0x5000, 0) == b""


def test_read_outside_memory_raises_memory_fault():
    m = mem()
    with pytest.raises(MemoryFault) as e:
        m.read(0x3FFF, 2)
    assert (e.value.gpa, e.value.size) == (0x3FFF, 2)
    with pytest.raises(MemoryFault):
        GuestMemory((Region(U64 - 4, 4),)).read(U64 - 2, 4)  # wraps


def test_write_outside_memory_raises_and_leaves_memory_unchanged():
    m = mem()
    with pytest.raises(MemoryFault):
        m.write(0x8FFF, b"ab")
    assert m.read(0x8FFE, 2) == b"\0\0"


def test_unwritten_memory_reads_zero_and_reads_span_regions():
    m = mem([Write(0x2FFE, b"\x01\x02\x03\x04")])
    assert m.read(0x2FFC, 8) == b"\0\0\x01\x02\x03\x04\0\0"


def test_later_writes_win():
    # protocol: writes are applied in order
    m = mem([Write(0x1000, b"aaaa"), Write(0x1001, b"bb")])
    assert m.read(0x1000, 4) == b"abba"
    m.write(0x1002, b"c")
    assert m.read(0x1000, 4) == b"abca"


def test_sparse_2_40_byte_region_costs_nothing():
    big = 1 << 40
    m = GuestMemory((Region(0, big),), [Write(big - 4, b"tail")])
    assert m.read(big - 8, 8) == b"\0\0\0\0tail"
    assert m.slices(0, big) == [(0, big)]
    assert m.contains(1 << 39, 1 << 39)


def test_access_log_records_every_read_and_write_in_order():
    m = mem()
    m.read(0x1000, 16)
    m.write(0x3000, b"xyz")
    m.read(0x8000, 0)
    assert m.log == [("r", 0x1000, 16), ("w", 0x3000, 3), ("r", 0x8000, 0)]


def test_failed_access_is_not_logged():
    m = mem()
    with pytest.raises(MemoryFault):
        m.read(0x5000, 1)
    assert m.log == []


def test_later_write_at_the_same_address_wins():
    # protocol: writes are applied in order, whatever their addresses sort to
    assert mem([Write(0x1000, b"bb"), Write(0x1000, b"aa")]).read(0x1000, 2) == b"aa"
    assert mem([Write(0x1001, b"x"), Write(0x1000, b"abc")]).read(0x1000, 3) == b"abc"


def test_reads_before_the_first_region_and_between_pieces():
    m = mem([Write(0x1000, b"ab"), Write(0x1010, b"cd")])
    assert m.region_index(0) == -1 and m.region_end(0) is None and m.slices(0, 1) is None
    assert m.read(0x1001, 0x10) == b"b" + bytes(14) + b"c"
    assert m.read(0x1008, 4) == bytes(4)


def test_gather_reads_slices_in_order_and_faults_like_read():
    m = mem([Write(0x1000, b"abcd"), Write(0x8000, b"xy")])
    assert m.gather([(0x8000, 2), (0x1002, 2), (0x1000, 1)]) == b"xycda"
    assert m.gather([]) == b""
    with pytest.raises(MemoryFault):
        m.gather([(0x1000, 1), (0x5000, 1)])
