//! Everything a vsock-fuzz target needs but the device.
//!
//! A target is a program the harness starts and talks to over stdin/stdout: protocol v1
//! (JSON lines, `docs/protocol.md`) or the frames-v1
//! transport it negotiates in hello (`docs/protocol-extensions.md`). This crate speaks
//! both, builds each case's guest memory (one host mapping per region, reserved, not
//! committed), applies the writes, calls your [`Device`] and translates what it returns.
//! A device that does not pop its own chain gets it from [`chain`]: the queue checked, the
//! chain walked, its buffers read as one byte stream.
//!
//! ```no_run
//! use vsock_fuzz_adapter::{run, Packet, Parse, Reject, Target};
//! fn main() {
//!     run(&Target::new("my-vmm vsock", "1.0"), |p: &Parse| -> Result<Packet, Reject> {
//!         Err(Reject::new("NotImplemented", format!("ring at {:#x}", p.ring.desc_table)))
//!     })
//! }
//! ```

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

pub mod chain;
pub mod coverage;
mod crashes;
mod memory;
pub mod wire;

pub use memory::{GuestMemory, Region};
use wire::{Answer, Case, Line, MODE_FRAMES};

/// The protection every region is mapped with (for wrapping the kit's mappings in a
/// VMM's own memory type, e.g. vm-memory's `MmapRegion::build_raw`).
pub const MMAP_PROT: i32 = libc::PROT_READ | libc::PROT_WRITE;
/// The flags every region is mapped with: private, anonymous, reserved without commit.
pub const MMAP_FLAGS: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;

/// Size of `struct virtio_vsock_hdr`.
pub const HEADER_SIZE: usize = 44;

/// Which virtqueue the chain was taken from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueKind {
    /// Driver to device: every buffer must be device-readable.
    #[default]
    Tx,
    /// Device to driver: every buffer must be device-writable.
    Rx,
}

/// A split virtqueue as the driver configured it. Values are what the fuzzer chose and
/// may be anything: sizes that are no power of two or do not fit a u16, misaligned rings.
/// The available ring holds one entry (`idx = 1, ring[0] = head`), written last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    pub size: u64,
    pub desc_table: u64,
    pub avail: u64,
    pub used: u64,
    pub head: u64,
}

/// One case, as the device sees it.
pub struct Parse<'a> {
    pub queue: QueueKind,
    /// The payload limit of this request (the device's own if it declared `max_data_size`).
    pub max_data_size: u64,
    pub ring: Ring,
    pub memory: &'a GuestMemory,
}

/// The vsock packet header fields (`struct virtio_vsock_hdr`, little-endian in memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Header {
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Self {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap());
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// An accepted packet: the header the device decoded (tx; `None` for rx) and the guest
/// memory it will read (tx) or write (rx), as `(gpa, len)` in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    pub header: Option<Header>,
    pub header_slices: Vec<(u64, u64)>,
    pub data_slices: Vec<(u64, u64)>,
}

impl Packet {
    /// Add a header slice given as a host pointer the device got from guest memory.
    pub fn header_host(&mut self, mem: &GuestMemory, ptr: *const u8, len: usize) -> &mut Self {
        self.header_slices.push(mem.guest_range(ptr, len));
        self
    }
    /// Add a data slice given as a host pointer (see [`GuestMemory::guest_range`]).
    pub fn data_host(&mut self, mem: &GuestMemory, ptr: *const u8, len: usize) -> &mut Self {
        self.data_slices.push(mem.guest_range(ptr, len));
        self
    }
}

/// A rejected packet: the device's own error name (its enum variant, e.g.
/// `DescriptorChainTooShort`) and free text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub error: Cow<'static, str>,
    pub detail: String,
}

impl Reject {
    pub fn new(error: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        Reject { error: error.into(), detail: detail.into() }
    }
    /// The adapter cannot set this case up (docs/protocol.md, "The device
    /// object"): no oracle judges it. Not for the device's own refusals.
    pub fn unsupported(detail: impl Into<String>) -> Self {
        Reject::new("Unsupported", detail)
    }
    /// A device error enum's variant as the name (`InvalidHeaderLen(70000)` ->
    /// `InvalidHeaderLen`, how the harness's error tables know them), its message as detail.
    pub fn of<E: std::fmt::Debug + std::fmt::Display>(e: &E) -> Self {
        let dbg = format!("{e:?}");
        let name = dbg.split(['(', ' ', '{']).next().unwrap_or_default().to_string();
        Reject::new(name, e.to_string())
    }
}

/// The device under test: one call per case.
pub trait Device {
    fn parse(&mut self, case: &Parse<'_>) -> Result<Packet, Reject>;
}

impl<F: FnMut(&Parse<'_>) -> Result<Packet, Reject>> Device for F {
    fn parse(&mut self, case: &Parse<'_>) -> Result<Packet, Reject> {
        self(case)
    }
}

/// What the hello answer says about the target and the device it wraps.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub name: String,
    pub version: String,
    /// Feature bits the device offers that change what a driver may queue, by spec
    /// name (`VIRTIO_F_INDIRECT_DESC`, `VIRTIO_F_VERSION_1`, ...). Listing none is a claim
    /// too: the harness then expects no indirect tables to be accepted.
    pub features: Vec<String>,
    /// The device's own fixed payload limit; `None`: it takes each request's.
    pub max_data_size: Option<u64>,
    /// The largest queue size the device's transport accepts.
    pub max_queue_size: Option<u64>,
    /// The largest region the adapter maps (larger ones answer `Unsupported`).
    pub max_region_size: Option<u64>,
    /// The most regions the adapter maps (more answer `Unsupported`).
    pub max_regions: Option<u64>,
}

impl Target {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Target { name: name.into(), version: version.into(), ..Default::default() }
    }

    fn hello(&self, id: &Option<serde_json::Value>, mode: Option<&str>, coverage: Option<&str>, crash_frames: bool) -> serde_json::Value {
        let mut device = serde_json::json!({ "features": self.features });
        for (k, v) in [
            ("max_data_size", self.max_data_size),
            ("max_queue_size", self.max_queue_size),
            ("max_region_size", self.max_region_size),
            ("max_regions", self.max_regions),
        ] {
            if let Some(v) = v {
                device[k] = v.into();
            }
        }
        let mut h = serde_json::json!({
            "ok": true, "protocol": 1, "name": self.name, "version": self.version, "device": device,
        });
        if let Some(id) = id {
            h["id"] = id.clone();
        }
        if let Some(m) = mode {
            h["mode"] = m.into();
        }
        if let Some(c) = coverage {
            h["coverage"] = c.into();
        }
        if crash_frames {
            h["crash_frames"] = true.into();
        }
        h
    }
}

/// Serve the harness on stdin/stdout until stdin closes.
///
/// A panic in the device that unwinds is answered with a crash frame when the harness
/// offers them and the process has no thread but this one (`crashes`): a forked child
/// serves the cases, and a fresh one goes on after a crash. Otherwise it unwinds out of
/// here (flushing the answers to the cases before it, so the harness blames the right one)
/// and the process exits with status 101. The harness reports either as a `safety.crash` on
/// the case in flight.
pub fn run(target: &Target, device: impl Device) {
    // std's stdout flushes at every newline; the answers are buffered instead and
    // flushed when the input runs dry (a pipelining harness gets them in few writes).
    // SAFETY: fds 0 and 1 are ours for the life of the process; ManuallyDrop leaves them open.
    let (stdin, stdout) = unsafe { (ManuallyDrop::new(File::from_raw_fd(0)), ManuallyDrop::new(File::from_raw_fd(1))) };
    let mut input = Input { r: &*stdin, buf: Vec::new(), pos: 0, end: 0, fd: Some(0), poll: Duration::ZERO };
    let r = serve_input(target, device, &mut input, BufWriter::with_capacity(1 << 16, &*stdout));
    if let Err(e) = r {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("vsock-fuzz-adapter: {e}");
            std::process::exit(2);
        }
    }
}

/// Buffered input that flushes the output before it blocks for more.
struct Input<R> {
    r: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    fd: Option<i32>, // the descriptor `r` reads, if it is one (then `poll` applies)
    poll: Duration,  // how long a read that would block polls first (hello's poll_us)
}

/// The longest poll_us a hello may ask for: a poll spends the CPU it waits on.
const MAX_POLL: Duration = Duration::from_millis(1);

/// Wait up to `limit` for `fd` to have input, yielding the CPU between polls. The harness
/// sends the next case tens of microseconds after an answer, about as long as a process
/// asleep on a pipe takes to wake (longer in a virtual machine, whose idle CPU leaves it).
fn poll(fd: i32, limit: Duration) {
    let start = Instant::now();
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, no timeout. Input, a hang-up or an error ends the wait.
    while unsafe { libc::poll(&mut p, 1, 0) } == 0 && start.elapsed() < limit {
        std::thread::yield_now();
    }
}

impl<R: Read> Input<R> {
    /// Make `n` unread bytes available; false at end of input.
    fn want(&mut self, n: usize, out: &mut impl Write) -> io::Result<bool> {
        while self.end - self.pos < n {
            out.flush()?;
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            let cap = (self.end + (1 << 16)).max(n);
            if self.buf.len() < cap {
                self.buf.resize(cap, 0);
            }
            if let (Some(fd), false) = (self.fd, self.poll.is_zero()) {
                poll(fd, self.poll);
            }
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Length of the next line (without its newline); `None` at end of input.
    fn line(&mut self, out: &mut impl Write) -> io::Result<Option<usize>> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buf[self.pos + scanned..self.end].iter().position(|&b| b == b'\n') {
                return Ok(Some(scanned + i));
            }
            scanned = self.end - self.pos;
            if !self.want(scanned + 1, out)? {
                return Ok((scanned > 0).then_some(scanned)); // a last line without newline
            }
        }
    }

    fn bytes(&self, n: usize) -> &[u8] {
        &self.buf[self.pos..self.pos + n]
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }
}

/// Serve `target` over any reader and writer (what [`run`] does on stdin/stdout).
pub fn serve<R: Read, W: Write>(target: &Target, device: impl Device, input: R, out: W) -> io::Result<()> {
    serve_input(target, device, &mut Input { r: input, buf: Vec::new(), pos: 0, end: 0, fd: None, poll: Duration::ZERO }, out)
}

fn serve_input<R: Read, W: Write>(target: &Target, mut device: impl Device, input: &mut Input<R>, mut out: W) -> io::Result<()> {
    let mut mem = GuestMemory::default();
    let mut cov = None;
    while let Some(n) = input.line(&mut out)? {
        let line = input.bytes(n);
        if line.iter().all(u8::is_ascii_whitespace) {
            input.consume(n + 1);
            continue;
        }
        let decoded = wire::decode_line(line);
        input.consume(n + 1);
        match decoded {
            Line::Hello { id, modes, coverage, poll_us, crash_frames } => {
                input.poll = Duration::from_micros(poll_us).min(MAX_POLL);
                let frames = modes.iter().any(|m| m == MODE_FRAMES);
                if cov.is_none() {
                    cov = coverage::Channel::open(&coverage);
                }
                // Under panic = "abort" a panic cannot be answered: the process dies, as without.
                let forked = frames && crash_frames && input.fd.is_some() && cfg!(panic = "unwind") && crashes::can_fork();
                let hello = target.hello(&id, frames.then_some(MODE_FRAMES), cov.as_ref().map(|c| c.name()), forked);
                serde_json::to_writer(&mut out, &hello)?;
                out.write_all(b"\n")?;
                if forked {
                    let cov = cov.as_ref();
                    return crashes::serve_forked(input, &mut out, |input, out| {
                        serve_frames(target, &mut device, &mut mem, cov, input, out, true)
                    });
                }
                if frames {
                    return serve_frames(target, &mut device, &mut mem, cov.as_ref(), input, &mut out, false).map(drop);
                }
            }
            Line::Parse { id, case } => {
                let answer = answer(target, &mut device, &mut mem, cov.as_ref(), &case);
                wire::answer_line(&mut out, &id, &answer)?;
            }
            Line::Bad { id, why } => wire::answer_line(&mut out, &id, &Err(Reject::new("BadRequest", why)))?,
        }
    }
    out.flush()
}

/// How serving frames ended.
enum Served {
    /// The input ended.
    Ended,
    /// The device panicked; the case was answered with a crash frame.
    Crashed,
}

/// Serve frames until the input ends or, `catching`, the device panics (the case is then
/// answered with a crash frame and the input left at the next request).
fn serve_frames<R: Read, W: Write>(
    target: &Target,
    device: &mut impl Device,
    mem: &mut GuestMemory,
    cov: Option<&coverage::Channel>,
    input: &mut Input<R>,
    out: &mut W,
    catching: bool,
) -> io::Result<Served> {
    while input.want(4, out)? {
        let n = u32::from_le_bytes(input.bytes(4).try_into().unwrap()) as usize;
        if n < 4 || !input.want(4 + n, out)? {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated frame"));
        }
        let frame = &input.bytes(4 + n)[4..];
        let id = u32::from_le_bytes(frame[..4].try_into().unwrap());
        let case = wire::decode_case(&frame[4..]);
        input.consume(4 + n);
        let answer = match case {
            Ok(case) if catching => {
                match crashes::answering(|| answer(target, device, mem, cov, &case)) {
                    Ok(answer) => answer,
                    Err(payload) => {
                        wire::crash_frame(out, id, &crashes::report(payload.as_ref()))?;
                        out.flush()?;
                        return Ok(Served::Crashed);
                    }
                }
            }
            Ok(case) => answer(target, device, mem, cov, &case),
            Err(why) => Err(Reject::new("BadRequest", why)),
        };
        wire::answer_frame(out, id, &answer)?;
    }
    out.flush()?;
    Ok(Served::Ended)
}

/// Set the case's memory up, apply its writes and ask the device (counting its edges
/// alone into the coverage region, when the harness took the channel).
fn answer(
    target: &Target,
    device: &mut impl Device,
    mem: &mut GuestMemory,
    cov: Option<&coverage::Channel>,
    case: &Case,
) -> Answer {
    let mut regions = case.regions.clone();
    regions.sort_unstable();
    for (i, &(gpa, size)) in regions.iter().enumerate() {
        // The harness never sends these (docs/protocol.md, "parse"); a request that does
        // is malformed, not a case.
        if size == 0 {
            return Err(Reject::new("BadRequest", format!("region at {gpa:#x} has size 0")));
        }
        if gpa.checked_add(size - 1).is_none() {
            return Err(Reject::new("BadRequest", format!("region at {gpa:#x} of {size} bytes runs past 2^64")));
        }
        if i > 0 && regions[i - 1].0 + (regions[i - 1].1 - 1) >= gpa {
            return Err(Reject::new("BadRequest", format!("region at {gpa:#x} overlaps the one before it")));
        }
        if target.max_region_size.is_some_and(|m| size > m) {
            return Err(Reject::unsupported(format!("region at {gpa:#x} of {size} bytes is over max_region_size")));
        }
    }
    if target.max_regions.is_some_and(|m| regions.len() as u64 > m) {
        return Err(Reject::unsupported(format!("{} regions, over max_regions", regions.len())));
    }
    if let Err(e) = mem.set_up(&regions) {
        return Err(Reject::unsupported(e.0));
    }
    // in order: a later write wins where two overlap
    for (gpa, data) in &case.writes {
        if mem.write(*gpa, data).is_none() {
            return Err(Reject::new("BadRequest", format!("write of {} bytes at {gpa:#x} is not inside memory", data.len())));
        }
    }
    let max_data_size = target.max_data_size.unwrap_or(case.max_data_size);
    let parse = Parse { queue: case.queue, max_data_size, ring: case.ring, memory: mem };
    let Some(cov) = cov else { return device.parse(&parse) };
    let _counted = cov.begin(); // ends on return and on a panic unwinding out (a crash's edges count)
    device.parse(&parse)
}

#[cfg(test)]
mod tests;
