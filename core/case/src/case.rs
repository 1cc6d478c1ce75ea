//! The case and its binary form: `vsock_fuzz/case/{value,binary,layout}.py` in Rust.
//!
//! The Python modules are the reference (their docstrings describe the format); this file
//! follows them step by step so that both decode every byte string to the same case
//! (`tests/test_core.py` holds them to it). Addresses are u128: Python's integers never
//! wrap, and a layout near the top of memory computes ring addresses past 2^64.

pub const U64: u128 = 1 << 64;
const MASK64: u128 = U64 - 1;
pub const DESC_SIZE: u128 = 16;
pub const HEADER_SIZE: u128 = 44;
pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

const RX: u8 = 1;
const RAW: u8 = 2;
const SIZES: [u128; 20] = [
    256, 1, 2, 4, 8, 16, 32, 64, 128, 512, 1024, 2048, 4096, 8192, 16384, 32768, 0, 3, 65535, 65536,
];
const DEFAULT_REGION_SIZE: u128 = 1 << 20;
const PAGE: u128 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Region {
    pub gpa: u128,
    pub size: u128,
}

impl Region {
    pub fn end(&self) -> u128 {
        self.gpa + self.size
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub gpa: u128,
    pub data: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    pub size: u128,
    pub desc_table: u128,
    pub avail: u128,
    pub used: u128,
    pub head: u128,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub rx: bool,
    pub max_data_size: u128,
    pub regions: Vec<Region>,
    pub writes: Vec<Write>,
    pub ring: Ring,
}

/// The tx header's fields, in wire order (5.10.6).
pub type Header = [u128; 10];
const HEADER_WIDTHS: [usize; 10] = [8, 8, 4, 4, 4, 2, 2, 4, 4, 4];

pub fn pack_header(h: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE as usize);
    for (v, w) in h.iter().zip(HEADER_WIDTHS) {
        out.extend_from_slice(&v.to_le_bytes()[..w]);
    }
    out
}

pub fn unpack_header(raw: &[u8]) -> Header {
    let mut h = [0u128; 10];
    let mut pos = 0;
    for (v, w) in h.iter_mut().zip(HEADER_WIDTHS) {
        *v = raw[pos..pos + w].iter().rev().fold(0, |acc, &b| acc << 8 | b as u128);
        pos += w;
    }
    h
}

// --- value.py -----------------------------------------------------------------

/// None when [gpa, end) lies inside memory (one region, or adjacent ones); else the parts of
/// it inside each region it meets, by address (`value._outside`).
fn outside(regions: &[Region], gpa: u128, end: u128) -> Option<Vec<(u128, u128)>> {
    if regions.iter().any(|r| r.gpa <= gpa && end <= r.end()) {
        return None;
    }
    let mut sorted = regions.to_vec();
    sorted.sort();
    let spans: Vec<(u128, u128)> = sorted
        .iter()
        .map(|r| (gpa.max(r.gpa), end.min(r.end())))
        .filter(|(lo, hi)| lo < hi)
        .collect();
    if end <= U64 && spans.iter().map(|(lo, hi)| hi - lo).sum::<u128>() == end - gpa {
        return None;
    }
    Some(spans)
}

/// `value.clip_each`: each write, keeping only what lies inside memory.
pub fn clip_each(regions: &[Region], raw: Vec<(u128, Vec<u8>)>) -> Vec<Write> {
    let mut writes = Vec::with_capacity(raw.len());
    for (gpa, data) in raw {
        match outside(regions, gpa, gpa + data.len() as u128) {
            None => writes.push(Write { gpa, data }),
            Some(spans) => writes.extend(spans.into_iter().map(|(lo, hi)| Write {
                gpa: lo,
                data: data[(lo - gpa) as usize..(hi - gpa) as usize].to_vec(),
            })),
        }
    }
    writes
}

/// `value.avail_ring_writes`: le16 flags 0, le16 idx 1, le16 ring[0] = head, clipped.
pub fn avail_ring_writes(regions: &[Region], ring: &Ring) -> Vec<Write> {
    let head = (ring.head & 0xFFFF) as u16;
    let mut data = vec![0, 0, 1, 0];
    data.extend_from_slice(&head.to_le_bytes());
    clip_each(regions, vec![(ring.avail, data)])
}

// --- binary.py ----------------------------------------------------------------

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn u8(&mut self) -> u8 {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0, // missing bytes read as zero
        }
    }

    fn u16(&mut self) -> u16 {
        if self.pos + 2 <= self.data.len() {
            let v = u16::from_le_bytes([self.data[self.pos], self.data[self.pos + 1]]);
            self.pos += 2;
            return v;
        }
        self.u8() as u16
    }

    fn varint(&mut self) -> u128 {
        let mut v: u128 = 0;
        let mut shift = 0;
        let end = self.data.len().min(self.pos + 10);
        if self.pos >= end {
            return 0;
        }
        for &b in &self.data[self.pos..end] {
            v |= ((b & 0x7F) as u128) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        self.pos += shift / 7;
        v & MASK64
    }

    /// A varint count, never more than half the bytes left.
    fn count(&mut self) -> u128 {
        let v = self.varint();
        v.min((self.left() / 2) as u128)
    }

    fn count8(&mut self) -> usize {
        let n = self.u8() as usize;
        n.min(self.left() / 2)
    }

    fn take(&mut self, n: u128) -> Vec<u8> {
        let n = (n.min(self.left() as u128)) as usize;
        let out = self.data[self.pos..self.pos + n].to_vec();
        self.pos += n;
        out
    }
}

fn varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v & 0x7F) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `binary.encode`: the raw form, which decodes to exactly this case.
pub fn encode(case: &Case) -> Vec<u8> {
    let r = &case.ring;
    let mut out = vec![1, if case.rx { RX } else { 0 } | RAW];
    for v in [case.max_data_size, r.size, r.desc_table, r.avail, r.used, r.head, case.regions.len() as u128] {
        varint(&mut out, v);
    }
    for reg in &case.regions {
        varint(&mut out, reg.gpa);
        varint(&mut out, reg.size);
    }
    varint(&mut out, case.writes.len() as u128);
    for w in &case.writes {
        varint(&mut out, w.gpa);
        varint(&mut out, w.data.len() as u128);
        out.extend_from_slice(&w.data);
    }
    out
}

/// `binary.decode`: total, deterministic, never fails.
pub fn decode(data: &[u8]) -> Case {
    let mut rd = Reader { data, pos: 1 };
    let mode = rd.u8();
    let rx = mode & RX != 0;
    if mode & RAW != 0 {
        decode_raw(&mut rd, rx)
    } else {
        assemble(decode_layout(&mut rd, rx))
    }
}

fn decode_raw(rd: &mut Reader, rx: bool) -> Case {
    let mds = rd.varint();
    let ring = Ring { size: rd.varint(), desc_table: rd.varint(), avail: rd.varint(), used: rd.varint(), head: rd.varint() };
    let mut regions: Vec<Region> = Vec::new();
    let mut spans: Vec<(u128, u128)> = Vec::new(); // sorted (start, end), to drop overlaps
    for _ in 0..rd.count() {
        let (gpa, size) = (rd.varint(), rd.varint());
        let end = gpa + size;
        let i = spans.partition_point(|&(s, _)| s <= gpa);
        if size == 0 || end > U64 || (i > 0 && spans[i - 1].1 > gpa) || (i < spans.len() && spans[i].0 < end) {
            continue; // empty, wrapping or overlapping: dropped
        }
        spans.insert(i, (gpa, end));
        regions.push(Region { gpa, size });
    }
    let mut raw = Vec::new();
    for _ in 0..rd.count() {
        let gpa = rd.varint();
        let n = rd.varint();
        raw.push((gpa, rd.take(n)));
    }
    let mut writes = clip_each(&regions, raw);
    // The available ring is written last (protocol); added unless the writes end with it.
    let tail = avail_ring_writes(&regions, &ring);
    if !tail.is_empty() && !writes.ends_with(&tail) {
        writes.extend(tail);
    }
    Case { rx, max_data_size: mds, regions, writes, ring }
}

/// One descriptor as the driver writes it (`layout.Buf`).
#[derive(Clone, Debug)]
struct Buf {
    len: u128,
    flags: u16,
    addr: Option<u128>,
    next: Option<u16>,
    table: Vec<Buf>,
}

struct Layout {
    rx: bool,
    bufs: Vec<Buf>,
    header: Option<Header>,
    regions: Vec<Region>,
    size: u128,
    head: u128,
    desc_table: u128,
    max_data_size: u128,
    extra: Vec<(u128, Vec<u8>)>,
}

fn minus_one(v: u128, default: u128) -> u128 {
    if v == 0 {
        default
    } else {
        v - 1
    }
}

fn ctl_flags(ctl: u8) -> u16 {
    let ctl = ctl as u16;
    (ctl & 1) * F_WRITE | (ctl >> 1 & 1) * F_INDIRECT | (ctl >> 2 & 1) * F_NEXT | (ctl >> 6 & 1) * 8
}

fn decode_layout(rd: &mut Reader, rx: bool) -> Layout {
    let code = rd.u8();
    let size = if (code as usize) < SIZES.len() {
        SIZES[code as usize]
    } else if code < 128 {
        1 << (code & 15)
    } else {
        code as u128
    };
    let head = rd.u8() as u128;
    let mds = minus_one(rd.varint(), 65536);
    let table_off = rd.varint();
    let mut regions: Vec<Region> = Vec::new();
    let mut end: u128 = 0;
    for _ in 0..1 + (rd.u8() & 3) {
        let gpa = end + rd.varint();
        let v = rd.varint();
        let size = if v == 0 { DEFAULT_REGION_SIZE } else { v };
        let size = if gpa < U64 { size.min(U64 - gpa) } else { 0 };
        if size != 0 {
            regions.push(Region { gpa, size });
            end = gpa + size;
        }
    }
    if regions.is_empty() {
        regions.push(Region { gpa: 0, size: DEFAULT_REGION_SIZE });
    }

    let mut recs = Vec::new(); // the descriptors in encoding order
    let mut counts = Vec::new(); // how many records after each form its indirect table
    for _ in 0..rd.count8() {
        let ctl = rd.u8();
        let flags = ctl_flags(ctl);
        let len = rd.varint() & 0xFFFF_FFFF;
        let addr = match ctl >> 4 & 3 {
            0 => None,
            3 => Some(rd.varint()),
            anchor => {
                let reg = regions[rd.u8() as usize % regions.len()];
                let off = rd.varint();
                Some(if anchor == 1 { reg.gpa + off } else { (reg.gpa + reg.size).wrapping_sub(off) } & MASK64)
            }
        };
        let next = if ctl & 8 != 0 { Some(rd.u16()) } else { None };
        counts.push(if ctl & 2 != 0 { rd.u8() as usize } else { 0 });
        recs.push(Buf { len, flags, addr, next, table: Vec::new() });
    }
    // Every record sits once in the flat list (tables still empty): the bytes the chain carries.
    let auto_len = (stream_len(&recs).saturating_sub(HEADER_SIZE)).min(0xFFFF_FFFF);
    let bufs = if counts.iter().any(|&c| c != 0) { tables(&recs, &counts, &mut 0, recs.len()) } else { recs };

    // The header fields, read for rx too so the extra writes sit at the same place.
    let f: [u128; 10] = if rd.pos < rd.data.len() { std::array::from_fn(|_| rd.varint()) } else { [0; 10] };
    let header = (!rx).then(|| {
        [
            minus_one(f[0], 3),
            minus_one(f[1], 2),
            f[2] & 0xFFFF_FFFF,
            f[3] & 0xFFFF_FFFF,
            minus_one(f[4], auto_len) & 0xFFFF_FFFF,
            minus_one(f[5], 1) & 0xFFFF,
            minus_one(f[6], 5) & 0xFFFF,
            f[7] & 0xFFFF_FFFF,
            minus_one(f[8], 262144) & 0xFFFF_FFFF,
            f[9] & 0xFFFF_FFFF,
        ]
    });
    let mut extra = Vec::new();
    for _ in 0..rd.count8() {
        let reg = regions[rd.u8() as usize % regions.len()];
        let gpa = reg.gpa + rd.varint();
        let n = rd.varint();
        extra.push((gpa, rd.take(n)));
    }
    let desc_table = (regions[0].gpa + table_off) & MASK64;
    Layout { rx, bufs, header, regions, size, head, desc_table, max_data_size: mds, extra }
}

/// `binary._tables`: `count` buffers from recs[pos..], a record with a count taking the records after it.
fn tables(recs: &[Buf], counts: &[usize], pos: &mut usize, mut count: usize) -> Vec<Buf> {
    let mut bufs = Vec::new();
    while count > 0 && *pos < recs.len() {
        let mut buf = recs[*pos].clone();
        let sub = counts[*pos];
        *pos += 1;
        if sub > 0 {
            buf.table = tables(recs, counts, pos, sub);
        }
        bufs.push(buf);
        count -= 1;
    }
    bufs
}

/// `layout.stream_len`: device-readable bytes the chain carries, in walk order.
fn stream_len(bufs: &[Buf]) -> u128 {
    bufs.iter()
        .map(|b| if b.flags & F_INDIRECT != 0 { stream_len(&b.table) } else if b.flags & F_WRITE == 0 { b.len } else { 0 })
        .sum()
}

/// `layout.assemble`: lay the chain out in guest memory.
fn assemble(lay: Layout) -> Case {
    let size = lay.size;
    let avail = lay.desc_table + DESC_SIZE * size;
    let used = (avail + 6 + 2 * size + 3) & !3;
    let cursor = (used + 6 + 8 * size + PAGE - 1) & !(PAGE - 1);
    let mut laid: Vec<(u128, Vec<u8>)> = Vec::new(); // each descriptor table, inner ones first
    let mut placed: Vec<(u128, u128)> = Vec::new(); // data buffers in walk order
    lay_table(&lay.bufs, lay.desc_table, cursor, &mut laid, &mut placed);
    laid.reverse(); // a table ahead of those inside it
    if let Some(h) = &lay.header {
        laid.extend(scatter(&pack_header(h), &placed));
    }
    laid.extend(lay.extra);
    let ring = Ring { size, desc_table: lay.desc_table, avail, used, head: lay.head };
    let mut writes = clip_each(&lay.regions, laid);
    writes.extend(avail_ring_writes(&lay.regions, &ring));
    Case { rx: lay.rx, max_data_size: lay.max_data_size, regions: lay.regions, writes, ring }
}

fn lay_table(bufs: &[Buf], at: u128, mut cursor: u128, laid: &mut Vec<(u128, Vec<u8>)>, placed: &mut Vec<(u128, u128)>) -> u128 {
    let mut entries = Vec::with_capacity(16 * bufs.len());
    for (i, b) in bufs.iter().enumerate() {
        let indirect = b.flags & F_INDIRECT != 0;
        let addr = match b.addr {
            Some(a) => a,
            None => {
                let a = cursor;
                let n = if indirect { b.len.max(DESC_SIZE * b.table.len() as u128) } else { b.len };
                cursor = (cursor + n + 7) & !7;
                a
            }
        };
        if indirect {
            cursor = lay_table(&b.table, addr, cursor, laid, placed);
        } else {
            placed.push((addr, b.len));
        }
        let flags = if i + 1 == bufs.len() { 0 } else { F_NEXT } ^ b.flags;
        let next = b.next.unwrap_or((i + 1) as u16);
        entries.extend_from_slice(&((addr & MASK64) as u64).to_le_bytes());
        entries.extend_from_slice(&((b.len & 0xFFFF_FFFF) as u32).to_le_bytes());
        entries.extend_from_slice(&flags.to_le_bytes());
        entries.extend_from_slice(&next.to_le_bytes());
    }
    if !entries.is_empty() {
        laid.push((at, entries));
    }
    cursor
}

/// `layout.scatter`: cut `data` over the pieces in order, as a device reads a byte stream.
fn scatter(data: &[u8], pieces: &[(u128, u128)]) -> Vec<(u128, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    for &(addr, len) in pieces {
        if pos >= data.len() {
            break;
        }
        let take = len.min((data.len() - pos) as u128) as usize;
        if take > 0 {
            out.push((addr, data[pos..pos + take].to_vec()));
            pos += take;
        }
    }
    out
}

// --- device.py ----------------------------------------------------------------

/// `Device.fit`: the device's fixed max_data_size, only the memory its adapter maps.
pub fn fit(case: &Case, max_data_size: Option<u128>, max_region_size: Option<u128>, max_regions: Option<usize>) -> Case {
    let mut out = case.clone();
    if let Some(mds) = max_data_size {
        out.max_data_size = mds;
    }
    let mut changed = false;
    if let Some(n) = max_regions.filter(|&n| out.regions.len() > n) {
        out.regions.truncate(n);
        changed = true;
    }
    if let Some(m) = max_region_size.filter(|&m| out.regions.iter().any(|r| r.size > m)) {
        for r in &mut out.regions {
            r.size = r.size.min(m);
        }
        changed = true;
    }
    if changed {
        let raw = out.writes.drain(..).map(|w| (w.gpa, w.data)).collect();
        out.writes = clip_each(&out.regions, raw);
    }
    out
}
