//! The two transports: protocol v1 (JSON lines) and frames-v1 (binary frames).
//!
//! Requests of both decode into one [`Case`]; answers of both encode from one [`Answer`].

use std::io::{self, Write};

use serde::Deserialize;
use serde_json::Value;

use crate::{Header, Packet, QueueKind, Reject, Ring, HEADER_SIZE};

/// One parse request, whichever transport carried it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Case {
    pub queue: QueueKind,
    pub max_data_size: u64,
    pub regions: Vec<(u64, u64)>,
    pub writes: Vec<(u64, Vec<u8>)>,
    pub ring: Ring,
}

pub type Answer = Result<Packet, Reject>;

// ---- protocol v1 ----------------------------------------------------------

#[derive(Deserialize)]
struct RegionJ {
    gpa: u64,
    size: u64,
}

#[derive(Deserialize)]
struct WriteJ {
    gpa: u64,
    hex: String,
}

#[derive(Deserialize)]
struct RingJ {
    size: u64,
    desc_table: u64,
    avail: u64,
    used: u64,
    head: u64,
}

/// A v1 request line. Unknown keys are ignored (a later protocol may add some).
#[derive(Deserialize)]
struct LineJ {
    id: Option<Value>,
    op: Option<String>,
    modes: Option<Vec<String>>,
    coverage: Option<Vec<String>>,
    poll_us: Option<u64>,
    crash_frames: Option<bool>,
    queue: Option<String>,
    max_data_size: Option<u64>,
    memory: Option<Vec<RegionJ>>,
    writes: Option<Vec<WriteJ>>,
    ring: Option<RingJ>,
}

pub enum Line {
    /// `poll_us`: how long the harness asks the adapter to poll its input before it sleeps
    /// on it (0: not asked; docs/protocol-extensions.md, "Polling"). `crash_frames`: whether
    /// it takes a crash frame for a case the device panicked on ("Crash frames").
    Hello { id: Option<Value>, modes: Vec<String>, coverage: Vec<String>, poll_us: u64, crash_frames: bool },
    Parse { id: Option<Value>, case: Case },
    /// A line the kit cannot use: answered `BadRequest` with the id, if any.
    Bad { id: Option<Value>, why: String },
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks_exact(2).map(|p| Some(nib(p[0])? << 4 | nib(p[1])?)).collect()
}

pub fn decode_line(line: &[u8]) -> Line {
    let j: LineJ = match serde_json::from_slice(line) {
        Ok(j) => j,
        Err(e) => {
            // still echo the id when the line is an object that has one
            let id = serde_json::from_slice::<Value>(line).ok().and_then(|v| v.get("id").cloned());
            return Line::Bad { id, why: format!("not a request: {e}") };
        }
    };
    let id = j.id;
    match j.op.as_deref() {
        Some("hello") => {
            return Line::Hello {
                id,
                modes: j.modes.unwrap_or_default(),
                coverage: j.coverage.unwrap_or_default(),
                poll_us: j.poll_us.unwrap_or(0),
                crash_frames: j.crash_frames.unwrap_or(false),
            };
        }
        Some("parse") => {}
        other => return Line::Bad { id, why: format!("unknown op {other:?}") },
    }
    let (Some(queue), Some(max_data_size), Some(memory), Some(ring)) = (j.queue, j.max_data_size, j.memory, j.ring)
    else {
        return Line::Bad { id, why: "a parse request needs queue, max_data_size, memory and ring".into() };
    };
    let queue = match queue.as_str() {
        "tx" => QueueKind::Tx,
        "rx" => QueueKind::Rx,
        q => return Line::Bad { id, why: format!("queue {q:?} is neither \"tx\" nor \"rx\"") },
    };
    let mut writes = Vec::new();
    for w in j.writes.unwrap_or_default() {
        match unhex(&w.hex) {
            Some(data) => writes.push((w.gpa, data)),
            None => return Line::Bad { id, why: "a write's hex is not an even number of hex digits".into() },
        }
    }
    let ring = Ring { size: ring.size, desc_table: ring.desc_table, avail: ring.avail, used: ring.used, head: ring.head };
    let regions = memory.iter().map(|r| (r.gpa, r.size)).collect();
    Line::Parse { id, case: Case { queue, max_data_size, regions, writes, ring } }
}

fn open(out: &mut impl Write, id: &Option<Value>) -> io::Result<()> {
    match id {
        Some(v) => {
            out.write_all(b"{\"id\":")?;
            serde_json::to_writer(&mut *out, v)?;
            out.write_all(b",")
        }
        None => out.write_all(b"{"),
    }
}

fn slices_json(out: &mut impl Write, s: &[(u64, u64)]) -> io::Result<()> {
    out.write_all(b"[")?;
    for (i, (gpa, len)) in s.iter().enumerate() {
        write!(out, "{}[{gpa},{len}]", if i > 0 { "," } else { "" })?;
    }
    out.write_all(b"]")
}

pub fn answer_line(out: &mut impl Write, id: &Option<Value>, answer: &Answer) -> io::Result<()> {
    open(out, id)?;
    match answer {
        Ok(p) => {
            out.write_all(b"\"ok\":true,")?;
            if let Some(h) = &p.header {
                write!(
                    out,
                    "\"header\":{{\"src_cid\":{},\"dst_cid\":{},\"src_port\":{},\"dst_port\":{},\"len\":{},\
                     \"type\":{},\"op\":{},\"flags\":{},\"buf_alloc\":{},\"fwd_cnt\":{}}},",
                    h.src_cid, h.dst_cid, h.src_port, h.dst_port, h.len, h.type_, h.op, h.flags, h.buf_alloc, h.fwd_cnt
                )?;
            }
            out.write_all(b"\"header_slices\":")?;
            slices_json(out, &p.header_slices)?;
            out.write_all(b",\"data_slices\":")?;
            slices_json(out, &p.data_slices)?;
        }
        Err(r) => {
            out.write_all(b"\"ok\":false,\"error\":")?;
            serde_json::to_writer(&mut *out, &*r.error)?;
            out.write_all(b",\"detail\":")?;
            serde_json::to_writer(&mut *out, &r.detail)?;
        }
    }
    out.write_all(b"}\n")
}

// ---- frames-v1 --------------------------------------------------------------

pub const MODE_FRAMES: &str = "frames-v1";

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    /// LEB128, at most 10 bytes, as `vsock_fuzz` binary.encode writes it.
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for (i, &b) in self.0.iter().enumerate().take(10) {
            v |= ((b & 0x7f) as u64).checked_shl(7 * i as u32).unwrap_or(0);
            if b < 0x80 {
                self.0 = &self.0[i + 1..];
                return Some(v);
            }
        }
        None
    }
    fn take(&mut self, n: u64) -> Option<&[u8]> {
        let n = usize::try_from(n).ok().filter(|&n| n <= self.0.len())?;
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
}

/// A case in the raw binary form (byte 0 version, byte 1 bit 0 rx and bit 1 raw, then
/// varints: max_data_size, ring size, desc_table, avail, used, head, regions, writes).
pub fn decode_case(b: &[u8]) -> Result<Case, String> {
    if b.len() < 2 || b[1] & 2 == 0 {
        return Err("a frame carries a case in the raw binary form (byte 1 bit 1 set)".into());
    }
    let queue = if b[1] & 1 != 0 { QueueKind::Rx } else { QueueKind::Tx };
    let mut r = Bytes(&b[2..]);
    let short = || "the case ends early".to_string();
    let mut v = || r.varint().ok_or_else(short);
    let (max_data_size, size, desc_table, avail, used, head) = (v()?, v()?, v()?, v()?, v()?, v()?);
    let n = v()?;
    let mut regions = Vec::new();
    for _ in 0..n {
        regions.push((v()?, v()?));
    }
    let n = r.varint().ok_or_else(short)?;
    let mut writes = Vec::new();
    for _ in 0..n {
        let gpa = r.varint().ok_or_else(short)?;
        let len = r.varint().ok_or_else(short)?;
        writes.push((gpa, r.take(len).ok_or_else(short)?.to_vec()));
    }
    let ring = Ring { size, desc_table, avail, used, head };
    Ok(Case { queue, max_data_size, regions, writes, ring })
}

/// The raw binary form of a case (what the harness sends); for tests and clients.
pub fn encode_case(c: &Case) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = vec![1, 2 | (c.queue == QueueKind::Rx) as u8];
    let r = &c.ring;
    for v in [c.max_data_size, r.size, r.desc_table, r.avail, r.used, r.head, c.regions.len() as u64] {
        varint(&mut out, v);
    }
    for &(gpa, size) in &c.regions {
        varint(&mut out, gpa);
        varint(&mut out, size);
    }
    varint(&mut out, c.writes.len() as u64);
    for (gpa, data) in &c.writes {
        varint(&mut out, *gpa);
        varint(&mut out, data.len() as u64);
        out.extend_from_slice(data);
    }
    out
}

pub fn answer_frame(out: &mut impl Write, id: u32, answer: &Answer) -> io::Result<()> {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&id.to_le_bytes());
    match answer {
        Ok(p) => {
            body.push(1);
            match &p.header {
                Some(h) => {
                    body.push(1);
                    body.extend_from_slice(&h.to_bytes());
                }
                None => body.push(0),
            }
            for list in [&p.header_slices, &p.data_slices] {
                body.extend_from_slice(&(list.len() as u32).to_le_bytes());
                for &(gpa, len) in list.iter() {
                    body.extend_from_slice(&gpa.to_le_bytes());
                    body.extend_from_slice(&len.to_le_bytes());
                }
            }
        }
        Err(r) => {
            body.push(0);
            // the name is ASCII of at most 255 bytes (one length byte)
            let name: Vec<u8> = r.error.bytes().map(|c| if c.is_ascii() { c } else { b'?' }).take(255).collect();
            body.push(name.len() as u8);
            body.extend_from_slice(&name);
            body.extend_from_slice(r.detail.as_bytes());
        }
    }
    out.write_all(&(body.len() as u32).to_le_bytes())?;
    out.write_all(&body)
}

/// The answer frame to a case the device panicked on (status 2): `report`, what the panic
/// printed on stderr (docs/protocol-extensions.md, "Crash frames").
pub fn crash_frame(out: &mut impl Write, id: u32, report: &str) -> io::Result<()> {
    out.write_all(&(5 + report.len() as u32).to_le_bytes())?;
    out.write_all(&id.to_le_bytes())?;
    out.write_all(&[2])?;
    out.write_all(report.as_bytes())
}

/// `(id, answer)` from an answer frame without its length prefix; for tests and clients.
pub fn decode_answer_frame(f: &[u8]) -> Option<(u32, Answer)> {
    let id = u32::from_le_bytes(f.get(..4)?.try_into().ok()?);
    match *f.get(4)? {
        0 => {
            let n = *f.get(5)? as usize;
            let name = std::str::from_utf8(f.get(6..6 + n)?).ok()?.to_string();
            let detail = String::from_utf8_lossy(&f[6 + n..]).into_owned();
            Some((id, Err(Reject::new(name, detail))))
        }
        1 => {
            let mut pos = 6;
            let header = if *f.get(5)? != 0 {
                pos += HEADER_SIZE;
                Some(Header::from_bytes(f.get(6..pos)?.try_into().ok()?))
            } else {
                None
            };
            let mut lists = [Vec::new(), Vec::new()];
            for list in &mut lists {
                let n = u32::from_le_bytes(f.get(pos..pos + 4)?.try_into().ok()?) as usize;
                pos += 4;
                for _ in 0..n {
                    let gpa = u64::from_le_bytes(f.get(pos..pos + 8)?.try_into().ok()?);
                    let len = u64::from_le_bytes(f.get(pos + 8..pos + 16)?.try_into().ok()?);
                    list.push((gpa, len));
                    pos += 16;
                }
            }
            let [header_slices, data_slices] = lists;
            (pos == f.len()).then_some((id, Ok(Packet { header, header_slices, data_slices })))
        }
        _ => None,
    }
}
