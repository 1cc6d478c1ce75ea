"""Linux layouts carry what a Linux guest writes in a tx header (facts file), and a device that
refuses a header for its content, whatever the layout, is no interop failure."""

from dataclasses import replace

import pytest
from hypothesis import given, settings

from vsock_fuzz.case.layout import (LINUX_VERSIONS, Buf, Layout, assemble, is_linux_header, linux_header,
                                    linux_rx, linux_tx)
from vsock_fuzz.case.wire import (CID_HOST, DESC_SIZE, DESC_STRUCT, F_INDIRECT, F_NEXT, HEADER_SIZE,
                                  OP_CREDIT_UPDATE, OP_REQUEST, OP_RW, SEQ_EOM, TYPE_SEQPACKET, TYPE_STREAM, Header)
from vsock_fuzz.engines import check, seeds
from vsock_fuzz.engines.strategies import linux_layouts
from vsock_fuzz.model.answer import Answer
from vsock_fuzz.model.device import Device
from vsock_fuzz.model.memory import GuestMemory
from vsock_fuzz.model.packet import parse
from vsock_fuzz.oracles import evaluate
from vsock_fuzz.oracles.interop import content_probe, content_rejection, linux_layout
from vsock_fuzz.targets import PythonTarget
from vsock_fuzz.zoo import two_desc


# --- the header Linux sends (A) ----------------------------------------------------

def test_linux_header_follows_the_payload():
    assert linux_header(100) == Header(len=100, op=OP_RW)
    # No STREAM socket sends RW without payload: its empty packet is a credit update.
    assert linux_header(0) == Header(len=0, op=OP_CREDIT_UPDATE)
    assert linux_header(0, Header(op=OP_REQUEST)).op == OP_REQUEST
    assert linux_header(8, Header(op=OP_REQUEST)).op == OP_RW       # only RW carries payload
    # A SEQPACKET socket ends a message with an empty RW.
    eom = linux_header(0, Header(type=TYPE_SEQPACKET))
    assert (eom.op, eom.flags & SEQ_EOM) == (OP_RW, SEQ_EOM)
    for h in (linux_header(0), linux_header(1), linux_header(64 * 1024), eom):
        assert is_linux_header(h) and h.dst_cid == CID_HOST and h.src_cid >= 3
    with pytest.raises(ValueError):
        linux_header(5, Header(dst_cid=7))                           # guest-host traffic only


def test_headers_no_linux_guest_sends():
    assert not is_linux_header(Header(len=0, op=OP_RW))              # an empty STREAM RW
    assert not is_linux_header(Header(len=5, op=OP_REQUEST))         # payload on a control op
    assert not is_linux_header(Header(len=5, dst_cid=3))             # not to the host
    assert not is_linux_header(Header(len=5, src_cid=2))             # not from a guest
    assert not is_linux_header(Header(len=64 * 1024 + 1))            # over VIRTIO_VSOCK_MAX_PKT_BUF_SIZE
    assert not is_linux_header(Header(len=5, type=3))


@pytest.mark.parametrize("version", LINUX_VERSIONS)
@pytest.mark.parametrize("payload", [0, 5, 40000])
def test_linux_tx_carries_linux_content(version, payload):
    lay = linux_tx(version, payload)
    assert is_linux_header(lay.header) and lay.header.type == TYPE_STREAM
    assert linux_layout(assemble(lay)) is not None


def test_check_rows_and_seeds_send_linux_headers():
    rows = [r for r in check.rows() if r.group == "linux-tx"]
    assert rows and all(is_linux_header(r.header) for r in rows)
    empty = [r.header for r in rows if r.name.endswith("/0B") or "/0B/" in r.name]
    assert empty and {h.op for h in empty} == {OP_CREDIT_UPDATE}
    linux = [lay.header for q, lay in seeds.driver_layouts() if q == "tx"]
    assert all(is_linux_header(h) for h in linux)


@settings(max_examples=50, deadline=None)
@given(linux_layouts("tx"))
def test_the_linux_strategy_sends_linux_headers(lay):
    assert is_linux_header(lay.header)


def test_a_header_no_linux_guest_sends_is_no_linux_layout():
    good = linux_tx("6.2", 0)
    assert linux_layout(assemble(good)) is not None
    for bad in (Header(len=0, op=OP_RW), Header(len=0, op=OP_CREDIT_UPDATE, dst_cid=3)):
        assert linux_layout(assemble(Layout("tx", good.bufs, header=bad))) is None


# --- the content probe (B) -------------------------------------------------------------

def _stream(case, n):
    """The first n bytes of the case's chain, from its descriptors (direct or one table)."""
    mem = GuestMemory(case.regions, case.writes)
    descs, at, i = [], case.ring.desc_table, case.ring.head
    while True:
        addr, length, flags, nxt = DESC_STRUCT.unpack(mem.read(at + DESC_SIZE * i, DESC_SIZE))
        if flags & F_INDIRECT:
            at, i = addr, 0
            continue
        descs.append((addr, length))
        if not flags & F_NEXT:
            break
        i = nxt
    data = b"".join(mem.read(a, k) for a, k in descs)
    return data[:n], descs


LINUX_TX = [(v, n, ind) for v in LINUX_VERSIONS for n in (5, 4096, 40000) for ind in (False, True)]


@pytest.mark.parametrize("version,payload,indirect", LINUX_TX)
def test_the_probe_is_the_same_header_in_two_descriptors(version, payload, indirect):
    case = assemble(linux_tx(version, payload, indirect=indirect, header=Header(src_port=77, fwd_cnt=9)))
    probe = content_probe(case)
    assert probe is not None and probe.queue == "tx" and probe.max_data_size == case.max_data_size
    got, descs = _stream(probe, HEADER_SIZE)
    want, _ = _stream(case, HEADER_SIZE)
    assert got == want                                                      # the same header bytes
    assert Header.unpack(got).len == payload                                # the same payload length
    direct_two = version == "5.x" and not indirect
    # Two direct descriptors (Linux < 6.2); a case already so is asked as one (Linux >= 6.2).
    assert [n for _, n in descs] == ([HEADER_SIZE + payload] if direct_two else [HEADER_SIZE, payload])
    assert linux_layout(probe) == ("one descriptor (Linux >= 6.2)" if direct_two else "two descriptors (Linux < 6.2)")
    assert parse(probe).ok


def test_the_probe_keeps_the_payload_bytes():
    payload = bytes(range(1, 17))
    at = 0x80000  # an explicitly placed single descriptor, the payload right after its header
    case = assemble(Layout("tx", (Buf(HEADER_SIZE + 16, addr=at),), header=linux_header(16),
                           extra=((at + HEADER_SIZE, payload),)))
    got, _ = _stream(content_probe(case), HEADER_SIZE + 16)
    assert got[HEADER_SIZE:] == payload


def test_no_probe_without_another_linux_layout():
    assert content_probe(assemble(linux_tx("6.2", 0))) is None              # empty: one layout only
    assert content_probe(assemble(Layout("tx", (Buf(20), Buf(24 + 5)), header=linux_header(5)))) is None
    assert content_probe(assemble(linux_rx("6.2"))) is None


def refuses_cid_3(case):
    """A device configured with guest CID 52: it resets whatever CID 3 sends, in any layout."""
    a = parse(case)
    if a.ok and a.header is not None and a.header.src_cid != 52:
        return Answer.reject("InvalidSourceCid", "chain", f"src_cid {a.header.src_cid} is not the guest's")
    return a


def test_content_rejection_tells_content_from_layout():
    single = assemble(linux_tx("6.2", 1024))
    rejected = refuses_cid_3(single)
    assert not rejected.ok
    # The same header in two descriptors is refused too: the content.
    assert content_rejection(single, rejected, refuses_cid_3).error == "InvalidSourceCid"
    # vm-virtio #204: two descriptors taken, one refused: the layout.
    refused = two_desc.parse(single)
    assert not refused.ok and content_rejection(single, refused, two_desc.parse) is None
    assert content_rejection(single, parse(single), refuses_cid_3) is None  # accepted: nothing to ask


def test_a_probe_asks_in_a_plain_queue():
    # A queue its transport refuses is no content: the probe's queue is one the device takes.
    big = assemble(replace(linux_tx("6.2", 100), size=32768))

    def max_256(case):
        return Answer.reject("InvalidQueueSize", "queue", "") if case.ring.size > 256 else parse(case)
    assert content_probe(big).ring.size == 256
    assert content_rejection(big, max_256(big), max_256) is None
    assert content_probe(big, Device(max_queue_size=16, source="hello")).ring.size == 16


def test_check_rows_refused_for_their_content_are_differential():
    results = {r.row.name: r for r in check.run(PythonTarget(refuses_cid_3, "cid52"), pattern="^tx/linux-")}
    row = results["tx/linux-6.2/1KiB"]
    assert [fam for fam, _ in row.issues] == ["differential"]
    assert "the content, not the layout" in row.issues[0][1]
    # An empty packet has no other Linux layout: its rejection stays the row's interop failure.
    assert [fam for fam, _ in results["tx/linux-6.2/0B"].issues] == ["interop"]


def test_evaluate_drops_linux_rejected_for_a_content_rejection():
    # oracles/run.py evaluate: interop.linux-rejected stands only when another layout is taken.
    _, found = evaluate(PythonTarget(refuses_cid_3, "cid52"), assemble(linux_tx("6.17", 40000)))
    assert "interop.linux-rejected" not in {f.oracle for f in found}
    assert "differential.model" in {f.oracle for f in found}
    _, found = evaluate(PythonTarget(two_desc.parse, "two_desc"), assemble(linux_tx("6.2", 1024)))
    assert "interop.linux-rejected" in {f.oracle for f in found}


def test_a_content_probe_is_asked_once_per_target():
    # oracles/run.py: the same header and payload refused again is judged from the kept answer.
    asked = []

    def counting(case):
        asked.append(linux_layout(case))
        return refuses_cid_3(case)
    target = PythonTarget(counting, "cid52")
    for payload in (40000, 40000, 7):
        _, found = evaluate(target, assemble(linux_tx("6.17", payload)), determinism=0)
        assert "interop.linux-rejected" not in {f.oracle for f in found}
    assert asked.count("two descriptors (Linux < 6.2)") == 2  # 40000 once, then 7
    _, found = evaluate(PythonTarget(counting, "cid52"), assemble(linux_tx("6.17", 40000)), determinism=0)
    assert asked.count("two descriptors (Linux < 6.2)") == 3  # another target is asked
