"""The case's two encodings (issue 2, "The case"): JSON = the protocol's parse
request, and the compact binary form for coverage-guided mutation.

- case -> binary -> case and case -> JSON -> case are the identity;
- binary -> case -> binary may normalise, then is stable;
- decoding is total: any bytes give a valid case;
- small byte changes make small structural changes;
- real drivers' layouts are short inputs that decode to exactly their case.
"""

from hypothesis import HealthCheck, given, settings, strategies as st

from vsock_fuzz.case import binary
from vsock_fuzz.case.binary import Reader, decode, decode_layout, encode, encode_layout
from vsock_fuzz.case.value import U64, Case, Region, Ring, Write, avail_ring_writes, covered
from vsock_fuzz.case.wire import FIELD_NAMES, HEADER_SIZE
from vsock_fuzz.case.layout import LINUX_VERSIONS, assemble, flatten, linux_rx, linux_tx, stream_len

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

u64 = st.one_of(st.integers(0, 0xFFFF), st.integers(0, U64 - 1), st.sampled_from([0, 1, U64 - 1, 1 << 32, 1 << 63]))


@st.composite
def region_lists(draw):
    """Non-overlapping regions in any order: adjacent ones, holes, huge ones, ones ending at 2^64."""
    start = draw(st.sampled_from([0, 0x1000, 1 << 32, U64 - (1 << 24), U64 - 0x100])) + draw(st.integers(0, 0xFF))
    out = []
    end = start
    for _ in range(draw(st.integers(1, 5))):
        gpa = end + draw(st.one_of(st.just(0), st.integers(1, 1 << 16), st.integers(1, 1 << 44)))
        size = draw(st.one_of(st.integers(1, 1 << 16), st.integers(1, 1 << 44), st.just(U64 - 1)))
        size = min(size, U64 - gpa, U64 - 1)  # a size is a u64
        if size <= 0:
            break
        out.append(Region(gpa, size))
        end = gpa + size
    if not out:
        out.append(Region(0, draw(st.integers(1, 1 << 20))))
    return tuple(draw(st.permutations(out)))


@st.composite
def cases(draw):
    """Any valid case: writes inside memory, any ring values, writes ending with the available ring."""
    regions = draw(region_lists())
    writes = []
    for _ in range(draw(st.integers(0, 6))):
        r = draw(st.sampled_from(regions))
        off = draw(st.integers(0, r.size - 1))
        n = draw(st.integers(0, min(48, r.size - off)))
        writes.append(Write(r.gpa + off, draw(st.binary(min_size=n, max_size=n))))
    ring = Ring(*(draw(u64) for _ in range(5)))
    writes += avail_ring_writes(regions, ring)
    return Case(draw(st.sampled_from(["tx", "rx"])), draw(u64), regions, tuple(writes), ring)


@SETTINGS
@given(cases())
def test_case_binary_case_is_identity(case):
    assert decode(encode(case)) == case
    assert decode(encode(case)) == case


@SETTINGS
@given(cases())
def test_case_json_case_is_identity(case):
    req = case.to_request(17)
    assert req["op"] == "parse" and req["id"] == 17
    assert Case.from_request(req) == case


@SETTINGS
@given(st.binary(max_size=200))
def test_decode_is_total_and_gives_a_valid_case(data):
    case = decode(data)
    assert Case.from_request(case.to_request()) == case
    assert all(covered(case.regions, w.gpa, len(w.data)) for w in case.writes)


@SETTINGS
@given(st.binary(max_size=200))
def test_binary_case_binary_normalises_then_is_stable(data):
    once = encode(decode(data))
    assert decode(once) == decode(data)
    assert encode(decode(once)) == once


@SETTINGS
@given(st.binary(max_size=120).map(lambda b: bytes((1, 0)) + b))
def test_structured_form_is_total(data):
    case = decode(data)
    assert Case.from_request(case.to_request()) == case


def test_decode_is_deterministic():
    data = bytes(range(256)) * 2
    assert decode(data) == decode(data)
    assert decode(b"") == decode(b"\x01")  # missing bytes read as zero


def test_decoded_cases_end_with_the_available_ring():
    # docs/protocol.md: the harness has written the available ring
    # raw form: max_data_size 0, size 8, table 0, avail 0x40, used 0, head 3, one region [0, 0x1000), no writes
    case = decode(bytes((1, binary.RAW, 0, 8, 0, 0x40, 0, 3, 1, 0, 0x80, 0x20, 0)))
    assert case.writes == (Write(0x40, bytes((0, 0, 1, 0, 3, 0))),)
    # a case already ending with it is left alone (identity)
    assert decode(encode(case)) == case


# --- Linux layouts in the structured form -----------------------------------

def linux_layouts():
    for version in LINUX_VERSIONS:
        for indirect in (False, True):
            for payload in (0, 5, 4096, 40000):
                yield linux_tx(version, payload, indirect=indirect)
            yield linux_rx(version, indirect=indirect)


def test_linux_layouts_encode_short_and_decode_to_exactly_their_case():
    for lay in linux_layouts():
        data = encode_layout(lay)
        assert decode(data) == assemble(lay), lay
        n_descs = sum(1 for _ in flatten(lay.bufs)) + sum(1 for b in lay.bufs if b.table)
        # at most 40 bytes; the 6.17 multi-fragment tx costs 3 bytes per page fragment
        assert len(data) <= max(40, 20 + 4 * n_descs), (len(data), lay)


class SpanReader(Reader):
    """A Reader that notes where each varint lies."""

    def __init__(self, data, pos=0):
        super().__init__(data, pos)
        self.spans = []

    def varint(self):
        start = self.pos
        v = super().varint()
        self.spans.append((start, self.pos))
        return v


def description(lay):
    """The layout as its encoding describes it: one entry per field a byte can set."""
    out = {"size": lay.size, "head": lay.head, "mds": lay.max_data_size,
           "table_off": (lay.desc_table - lay.regions[0].gpa) % U64}
    end = 0
    for i, r in enumerate(lay.regions):
        out[f"region{i}.gap"], out[f"region{i}.size"] = r.gpa - end, r.size
        end = r.end

    def bufs(bs, path):
        for i, b in enumerate(bs):
            for f in ("len", "flags", "addr", "next"):
                out[f"{path}{i}.{f}"] = getattr(b, f)
            bufs(b.table, f"{path}{i}.")
    bufs(lay.bufs, "buf")
    if lay.header is not None:
        auto = min(max(stream_len(lay.bufs) - HEADER_SIZE, 0), 0xFFFFFFFF)
        for f in FIELD_NAMES:
            v = getattr(lay.header, f)
            out[f"hdr.{f}"] = "auto" if f == "len" and v == auto else v
    for i, (gpa, data) in enumerate(lay.extra):
        out[f"extra{i}"] = (gpa, data)
    return out


def changed_fields(a, b):
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def test_one_byte_change_makes_at_most_one_field_change():
    # every value byte of every Linux layout: each bit of a varint's 7 value bits,
    # and every bit of the queue-size and head bytes (structural bytes excluded)
    checked = 0
    for lay in linux_layouts():
        data = encode_layout(lay)
        rd = SpanReader(data, 2)
        base = description(decode_layout(rd, lay.queue))
        value_bits = [(2, bit) for bit in range(8)] + [(3, bit) for bit in range(8)]
        value_bits += [(p, bit) for s, e in rd.spans for p in range(s, e) for bit in range(7)]
        for pos, bit in value_bits:
            mutated = bytearray(data)
            mutated[pos] ^= 1 << bit
            after = description(decode_layout(Reader(bytes(mutated), 2), lay.queue))
            changed = changed_fields(base, after)
            assert len(changed) <= 1, (pos, bit, changed)
            checked += len(changed)
    assert checked > 1000  # most flips do change a field
