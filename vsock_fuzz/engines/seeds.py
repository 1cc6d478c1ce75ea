"""The seed corpus and the libFuzzer dictionary, generated.

    python -m vsock_fuzz.engines.seeds corpus/          # (re)write corpus/<harness>/ and corpus/vsock.dict
    python -m vsock_fuzz.engines.seeds corpus/ --clean  # also delete seed-directory files not generated

Every seed is a `layout.Layout` laid out by `layout.assemble`, stored in the
short structured form (`binary.encode_layout`, what mutation starts from)
and in the raw form (`binary.encode`, every field explicit), each named by
the sha1 of its bytes as libFuzzer names corpus files. Without `--clean`
files already there are kept (a fuzzer adds its own inputs to a corpus).

Harnesses: `tx` and `rx` get the packet layouts of their queue, `chain` the
chain-walk families of both queues, `target` everything.

The package ships them: `packaged()` is `vsock_fuzz/data/` in an installed
wheel (built from corpus/, their one source) and corpus/ in a checkout;
`vsock-fuzz seeds DIR` copies them out, and `vsock-fuzz fuzz` starts from
`packaged()/target` with `packaged()/vsock.dict` unless told otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..case.binary import SIZES, VERSION, RAW, RX, decode, encode, encode_layout, varint
from ..case.value import Region
from ..case.wire import DESC_SIZE, F_INDIRECT, F_NEXT, F_WRITE
from ..case.corpus import atomic_write, content_name
from ..case.wire import HEADER_SIZE, MAX_PKT_BUF_SIZE, OP_REQUEST, OP_SHUTDOWN, TYPE_SEQPACKET, Header
from ..case.layout import LINUX_VERSIONS, PAGE, Buf, Layout, assemble, linux_header, linux_rx, linux_tx

HARNESSES = ("tx", "rx", "chain", "target")
H = HEADER_SIZE
W = F_WRITE
TWO = (Region(0, 0x10000), Region(0x10000, 0x10000))           # adjacent: one gpa range, two mappings
HOLE = (Region(0, 0x10000), Region(0x20000, 0x10000))          # a hole between them


def _tx(bufs, **kw) -> Layout:
    # Linux's header for the length: a device that checks the header first still meets the layout.
    return Layout("tx", tuple(bufs), header=kw.pop("header", linux_header(kw.pop("len", 5))), **kw)


def _rx(bufs, **kw) -> Layout:
    return Layout("rx", tuple(bufs), **kw)


def _ind(*entries, flags=0, length=None, addr=None, next=None) -> Buf:
    return Buf(DESC_SIZE * len(entries) if length is None else length, F_INDIRECT | flags, addr, next, tuple(entries))


def driver_layouts():
    """What real Linux drivers send (facts file): must be accepted."""
    out = []
    for v in LINUX_VERSIONS:
        for payload in (0, 1, 5, PAGE, 32 * 1024, 40000, MAX_PKT_BUF_SIZE):
            for ind in (False, True):
                out.append(("tx", linux_tx(v, payload, indirect=ind)))
        for ind in (False, True):
            out.append(("rx", linux_rx(v, indirect=ind)))
    for hdr in (Header(op=OP_REQUEST), Header(op=OP_SHUTDOWN, flags=3), Header(type=TYPE_SEQPACKET, flags=1)):
        out.append(("tx", linux_tx("6.2", 0 if hdr.op != 5 else 8, header=hdr)))
    return out


def packet_families():
    """Spec-valid but unusual packets and their near misses."""
    tx = [
        _tx([Buf(20), Buf(24), Buf(5)]),                                  # header split over two descriptors
        _tx([Buf(1)] * (H + 4), len=4),                                   # 1-byte pieces
        _tx([Buf(H), Buf(0), Buf(5)]),                                    # zero-length descriptor inside
        _tx([Buf(50), Buf(3)], len=9),                                    # data split at an odd place
        _tx([Buf(H + 5, addr=0x10000 - 20)], regions=TWO),                # crosses adjacent regions
        _tx([Buf(H), Buf(5, addr=0x10000 - 2)], regions=TWO),             # data crosses adjacent regions
        _tx([Buf(H + 5, addr=0x10000 - 20)], regions=HOLE),               # runs into a hole
        _tx([Buf(H + 5, addr=0x10000 - H - 5)], regions=HOLE),            # ends exactly at the region end
        _tx([Buf(H + 5, addr=0x10000 - H - 4)], regions=HOLE),            # one byte past it
        _tx([Buf(H), Buf(5, addr=0x10000)], regions=HOLE),                # data starts in the hole
        _tx([Buf(H + 5, addr=PAGE * 3 + 1)]),                             # misaligned buffer
        _tx([Buf(H + 5)], len=MAX_PKT_BUF_SIZE + 1),                      # hdr.len over max_data_size
        _tx([Buf(H + 5)], len=0xFFFFFFFF),                                # hdr.len u32 max
        _tx([Buf(H + 5)], len=6),                                         # hdr.len one past the chain
        _tx([Buf(H + 5)], max_data_size=4),                               # max_data_size below the payload
        _tx([Buf(H + 5)], max_data_size=0, len=0),                        # max_data_size 0, no payload
        _tx([Buf(H - 1)], len=0),                                         # header one byte short
        _tx([Buf(H), Buf(0xFFFFFFFF, addr=0x80000)]),                      # descriptor len u32 max
        _tx([Buf(H, W), Buf(5)]),                                         # wrong direction: header
        _tx([Buf(H), Buf(5, W)]),                                         # wrong direction: data
        _tx([Buf(H + 5), Buf(16, W)]),                                    # writable buffer past the packet
        _tx([Buf(H + 5, 8)]),                                             # an unknown flag bit
    ]
    rx = [
        _rx([Buf(20, W), Buf(24, W), Buf(PAGE, W)]),                      # header split
        _rx([Buf(1, W)] * (H + 4)),                                       # 1-byte pieces
        _rx([Buf(H, W), Buf(0, W), Buf(PAGE, W)]),                        # zero-length descriptor inside
        _rx([Buf(H + PAGE, W, addr=0x10000 - 100)], regions=TWO),         # crosses adjacent regions
        _rx([Buf(H + 100, W, addr=0x10000 - H - 100)], regions=HOLE),     # ends exactly at the region end
        _rx([Buf(H + 100, W, addr=0x10000 - H - 99)], regions=HOLE),      # one byte past it
        _rx([Buf(H + MAX_PKT_BUF_SIZE + 1, W)]),                          # longer than max_data_size
        _rx([Buf(H, W), Buf(MAX_PKT_BUF_SIZE + 1, W)]),                   # data descriptor over max_data_size
        _rx([Buf(H + PAGE, W)], max_data_size=0),                         # no payload room allowed
        _rx([Buf(H, W)]),                                                 # a lone 44-byte head
        _rx([Buf(H - 1, W)]),                                             # one byte short
        _rx([Buf(H + PAGE, W, addr=PAGE * 3 + 3)]),                       # misaligned buffer
        _rx([Buf(H), Buf(PAGE, W)]),                                      # wrong direction: header
        _rx([Buf(H, W), Buf(PAGE)]),                                      # wrong direction: data
        _rx([Buf(H, W), Buf(0xFFFFFFFF, W, addr=0x80000)]),                # descriptor len u32 max
    ]
    return [("tx", lay) for lay in tx] + [("rx", lay) for lay in rx]


def chain_families():
    """Chain-walk and queue edge cases, each for both queues."""
    out = []
    for q, d in (("tx", 0), ("rx", W)):
        mk = _tx if q == "tx" else _rx
        data = Buf(5, d)
        hdr = Buf(H, d)
        for lay in (
            mk([Buf(H + 5, d | F_NEXT, next=0)]),                         # loop onto itself
            mk([Buf(H, d, next=1), Buf(5, d | F_NEXT, next=0)]),          # two-descriptor loop
            mk([hdr, Buf(5, d | F_NEXT, next=300)]),                      # next past the queue
            mk([hdr, Buf(5, d | F_NEXT, next=255)]),                      # next to the last (zero) entry
            mk([_ind(hdr, data)]),                                        # indirect
            mk([_ind(hdr, data, flags=F_NEXT)]),                          # INDIRECT with NEXT
            mk([_ind(_ind(hdr, data))]),                                  # nested indirect
            mk([_ind(length=0)]),                                         # empty table
            mk([_ind(hdr, data, length=24)]),                             # table len not a multiple of 16
            mk([_ind(hdr, data, addr=1 << 40)]),                          # table outside memory
            mk([_ind(hdr, data, flags=W)]),                               # WRITE on the table descriptor
            mk([hdr, _ind(data)]),                                        # direct then indirect
            mk([_ind(hdr, Buf(5, d | F_NEXT, next=7))]),                  # table entry next past the table
            # ... onto the descriptor right after the table: a one-entry table at the queue's entry 1,
            # whose next (1) is the queue's entry 2, the data (a walk bounded by the queue size takes it)
            mk([Buf(DESC_SIZE, F_INDIRECT | F_NEXT, addr=DESC_SIZE), Buf(H, d, next=1), data]),
            mk([_ind(hdr, Buf(5, d | F_NEXT, next=0))]),                  # loop inside the table
            mk([_ind(Buf(1 << 31, d, addr=0x80000), Buf(1 << 31, d, addr=0x80000), Buf(1, d, addr=0x80000))]),  # over 2^32 bytes
            mk([Buf(0xFFFFFFFF, d, addr=0x80000), Buf(0xFFFFFFFF, d, addr=0x80000)]),  # two u32-max descriptors
            mk([hdr, data], size=0),                                      # queue size 0
            mk([Buf(H + 5, d)], size=1),                                  # queue size 1
            mk([hdr, data], size=32768),                                  # queue size 32768
            mk([hdr, data], size=3),                                      # not a power of 2
            mk([hdr, data], size=65535),
            mk([hdr, data], head=5),                                      # head on a zero entry
            mk([hdr, data], head=255),
            mk([hdr, data], size=16, head=16),                            # head past the queue
            mk([hdr, data], desc_table=8),                                # misaligned descriptor table
            mk([hdr, data], desc_table=0x10000 - DESC_SIZE, regions=HOLE),  # table runs out of memory
        ):
            out.append((q, lay))
    return out


def seeds() -> dict[str, list[bytes]]:
    """Harness name -> seed inputs (each layout in structured and raw form)."""
    by_harness: dict[str, list[bytes]] = {h: [] for h in HARNESSES}
    for family, items in (("packet", driver_layouts() + packet_families()), ("chain", chain_families())):
        for q, lay in items:
            for data in forms(lay):
                by_harness["target"].append(data)
                by_harness[q if family == "packet" else "chain"].append(data)
    return {h: sorted(set(v)) for h, v in by_harness.items()}


def forms(lay: Layout) -> list[bytes]:
    """The raw form, and the structured form when it decodes to the same case."""
    case = assemble(lay)
    out = [encode(case)]
    try:
        short = encode_layout(lay)
    except ValueError:  # e.g. a queue size with no structured code
        return out
    if decode(short) == case:
        out.append(short)
    return out


# --- the dictionary -------------------------------------------------------------

def dictionary() -> list[tuple[str, bytes]]:
    """libFuzzer dictionary entries: values as they appear in the binary form."""
    entries: list[tuple[str, bytes]] = []
    for mode, name in ((0, "tx"), (RX, "rx"), (RAW, "tx_raw"), (RX | RAW, "rx_raw")):
        entries.append((f"prefix_{name}", bytes((VERSION, mode))))
    # varints: lengths and bounds (raw form and structured descriptor lengths)
    for v in (H, H - 1, H + 1, PAGE, H + PAGE, 32768, 40000, MAX_PKT_BUF_SIZE, MAX_PKT_BUF_SIZE + 1,
              0x10000 - 1, (1 << 31), 0xFFFFFFFF, 1 << 32, (1 << 64) - 1, 1 << 20, 1 << 40):
        entries.append((f"varint_{v:#x}", varint(v)))
    # structured "value + 1" fields: hdr.len, max_data_size
    for v in (H, PAGE, MAX_PKT_BUF_SIZE, 0xFFFFFFFF):
        entries.append((f"varint_plus1_{v:#x}", varint(v + 1)))
    # structured descriptor ctl bytes
    for ctl, name in ((0x01, "write"), (0x02, "indirect"), (0x04, "flip_next"), (0x08, "explicit_next"),
                      (0x10, "at_region_start"), (0x20, "at_region_end"), (0x30, "absolute"),
                      (0x40, "unknown_flag"), (0x06, "indirect_next"), (0x0C, "loop_next"), (0x21, "write_at_end")):
        entries.append((f"ctl_{name}", bytes((ctl,))))
    # structured queue size codes
    for size in (0, 1, 3, 32768, 65535, 65536):
        entries.append((f"size_code_{size}", bytes((SIZES.index(size),))))
    # raw little-endian fields as they sit in descriptors and headers
    for v, name in ((H, "44"), (PAGE, "4096"), (MAX_PKT_BUF_SIZE, "65536"), (0xFFFFFFFF, "u32max")):
        entries.append((f"le32_{name}", v.to_bytes(4, "little")))
    for flags, name in ((F_NEXT, "next"), (F_WRITE, "write"), (F_INDIRECT, "indirect"),
                        (F_NEXT | F_WRITE, "next_write"), (F_INDIRECT | F_NEXT, "indirect_next")):
        entries.append((f"le16_flags_{name}", flags.to_bytes(2, "little")))
    for v, name in ((1, "stream"), (2, "seqpacket"), (5, "op_rw"), (3, "op_rst")):
        entries.append((f"le16_{name}", v.to_bytes(2, "little")))
    entries.append(("le64_cid_any", (0xFFFFFFFF).to_bytes(8, "little")))
    entries.append(("le64_cid_host", (2).to_bytes(8, "little")))
    return entries


def dictionary_text() -> str:
    lines = ["# vsock-fuzz libFuzzer dictionary, generated by `python -m vsock_fuzz.engines.seeds`.",
             "# Values as they appear in the binary case form (binary.py)."]
    for name, value in dictionary():
        escaped = "".join("\\x%02x" % b for b in value)
        lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + "\n"


def generate(root: str, *, clean: bool = False) -> dict[str, int]:
    """Write the seeds and the dictionary under `root`; returns seeds per harness."""
    counts = {}
    for harness, items in seeds().items():
        d = os.path.join(root, harness)
        os.makedirs(d, exist_ok=True)
        names = {content_name(data): data for data in items}
        for name, data in names.items():
            path = os.path.join(d, name)
            if not os.path.exists(path):
                atomic_write(path, data)
        if clean:
            for name in os.listdir(d):
                if name not in names:
                    os.unlink(os.path.join(d, name))
        counts[harness] = len(names)
    atomic_write(os.path.join(root, "vsock.dict"), dictionary_text().encode())
    return counts


def packaged() -> str:
    """The directory holding the shipped seeds (`<harness>/`) and `vsock.dict`."""
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # vsock_fuzz/
    tried = (os.path.join(pkg, "data"), os.path.join(os.path.dirname(pkg), "corpus"))
    for d in tried:
        if os.path.isfile(os.path.join(d, "vsock.dict")) and all(os.path.isdir(os.path.join(d, h)) for h in HARNESSES):
            return d
    raise FileNotFoundError(f"no packaged seed corpus in {' or '.join(tried)}")


def copy_packaged(dest: str, *, overwrite: bool = False) -> dict[str, int]:
    """Copy the shipped seeds and dictionary into `dest` (files there are kept unless
    `overwrite`); returns seeds per harness, plus "vsock.dict": 1 when it was written."""
    import shutil
    src = packaged()
    counts: dict[str, int] = {}
    for harness in HARNESSES:
        os.makedirs(os.path.join(dest, harness), exist_ok=True)
        names = sorted(n for n in os.listdir(os.path.join(src, harness)) if not n.startswith("."))
        for name in names:
            to = os.path.join(dest, harness, name)
            if overwrite or not os.path.exists(to):
                shutil.copyfile(os.path.join(src, harness, name), to)
        counts[harness] = len(names)
    to = os.path.join(dest, "vsock.dict")
    if overwrite or not os.path.exists(to):
        shutil.copyfile(os.path.join(src, "vsock.dict"), to)
        counts["vsock.dict"] = 1
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vsock_fuzz.engines.seeds", description=__doc__.splitlines()[0])
    ap.add_argument("root", help="corpus directory (e.g. corpus/)")
    ap.add_argument("--clean", action="store_true", help="delete files in the seed directories that are not seeds")
    args = ap.parse_args(argv)
    for harness, n in generate(args.root, clean=args.clean).items():
        print(f"{os.path.join(args.root, harness)}: {n} seeds")
    print(f"{os.path.join(args.root, 'vsock.dict')}: {len(dictionary())} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
