//! {{NAME}}: a virtio-vsock device wrapped as a vsock-fuzz target.
//!
//! The kit (`vsock_fuzz_adapter::run`) speaks the harness's protocol and builds each case's
//! guest memory; `pop_chain` takes the chain off the available ring as a transport does;
//! `parse` is the device. As written it is a correct one, so `vsock-fuzz check` passes:
//! put your device's parsing in its place and run `check` again.

use vsock_fuzz_adapter::{run, Header, Packet, Parse, QueueKind, Reject, Target, HEADER_SIZE};

/// The largest split queue the spec allows; lower it to what your transport accepts.
const MAX_QUEUE_SIZE: u64 = 32768;

// TODO: your device's parsing here. It gets the chain's buffers in order and returns the
// header it decoded (tx) and the guest memory it reads (tx) or writes (rx), or its own
// error name (`Reject::of(&e)` takes your error enum's variant). Report the host slices
// your parser really uses (`Packet::header_host` / `data_host` translate them back).
fn parse(p: &Parse, chain: &[Buf]) -> Result<Packet, Reject> {
    let mut stream = Stream { p, bufs: chain, i: 0, off: 0 };
    let mut pkt = Packet::default();
    let header = stream.take(HEADER_SIZE as u64)?.ok_or_else(|| Reject::new("HeaderTooShort", ""))?;
    let mut raw = [0u8; HEADER_SIZE];
    let mut at = 0;
    for &(ptr, len) in &header {
        // SAFETY: host_ptr checked that the piece lies in one mapping, kept until the next case
        raw[at..at + len].copy_from_slice(unsafe { std::slice::from_raw_parts(ptr, len) });
        at += len;
        pkt.header_host(p.memory, ptr, len);
    }
    let data_len = match p.queue {
        QueueKind::Tx => {
            let h = Header::from_bytes(&raw);
            if h.len as u64 > p.max_data_size {
                return Err(Reject::new("InvalidHeaderLen", format!("hdr.len {}", h.len)));
            }
            pkt.header = Some(h);
            h.len as u64
        }
        // a driver may offer more room than one packet takes; the device writes no more
        QueueKind::Rx => stream.left().min(p.max_data_size),
    };
    let data = stream.take(data_len)?.ok_or_else(|| Reject::new("DataTooShort", format!("hdr.len {data_len}")))?;
    for (ptr, len) in data {
        pkt.data_host(p.memory, ptr, len);
    }
    Ok(pkt)
}

fn main() {
    // What the device offers a guest: the harness judges it by that (a driver never goes
    // past it). Drop VIRTIO_F_INDIRECT_DESC if your queue does not follow indirect tables.
    let target = Target {
        features: vec!["VIRTIO_F_VERSION_1".into(), "VIRTIO_F_INDIRECT_DESC".into()],
        max_queue_size: Some(MAX_QUEUE_SIZE),
        // x86-64 user space is 2^47 bytes: a larger region cannot be mapped
        max_region_size: Some(1 << 46),
        ..Target::new("{{NAME}}", "0.1.0")
    };
    run(&target, |p: &Parse| parse(p, &pop_chain(p)?));
}

// ---- the chain, popped as a transport does (virtio 1.2, 2.7) ----

const NEXT: u64 = 1;
const WRITE: u64 = 2;
const INDIRECT: u64 = 4;

/// One buffer of the chain, in the order the driver chained them.
#[derive(Clone, Copy, Debug)]
struct Buf {
    addr: u64,
    len: u64,
    writable: bool,
}

/// The queue as the driver configured it, and the chain its available ring names walked to
/// its end: a malformed chain is refused even past the packet, as the harness expects.
fn pop_chain(p: &Parse) -> Result<Vec<Buf>, Reject> {
    let r = p.ring;
    if r.size == 0 || r.size > MAX_QUEUE_SIZE || !r.size.is_power_of_two() {
        return Err(Reject::new("InvalidQueueSize", format!("queue size {}", r.size)));
    }
    let rings = [
        ("descriptor table", r.desc_table, 16, 16 * r.size),
        ("available ring", r.avail, 2, 6 + 2 * r.size),
        ("used ring", r.used, 4, 6 + 8 * r.size),
    ];
    for (name, at, align, len) in rings {
        if at % align != 0 {
            return Err(Reject::new("MisalignedRing", format!("{name} at {at:#x}")));
        }
        if !in_memory(p, at, len) {
            return Err(Reject::new("RingOutOfMemory", format!("{name} at {at:#x}")));
        }
    }
    // the driver's one entry, ring[0]; the available ring is in memory (checked above)
    let head = read_le(p, Some(r.avail + 4), 2).unwrap();
    if head >= r.size {
        return Err(Reject::new("InvalidHead", format!("head {head}")));
    }
    let (mut table, mut table_size, mut index, mut ttl) = (r.desc_table, r.size, head, r.size);
    let (mut indirect, mut total, mut chain) = (false, 0, Vec::new());
    loop {
        if index >= table_size {
            return Err(Reject::new("DescriptorIndexOutOfRange", format!("next {index} >= {table_size}")));
        }
        // a chain is no longer than its table (2.7.13.1): that bounds a loop
        if ttl == 0 {
            return Err(Reject::new("ChainTooLong", "longer than its table: a loop?"));
        }
        ttl -= 1;
        let at = |off| table.checked_add(16 * index + off);
        let d = (read_le(p, at(0), 8), read_le(p, at(8), 4), read_le(p, at(12), 2), read_le(p, at(14), 2));
        let (Some(addr), Some(len), Some(flags), Some(next)) = d else {
            return Err(Reject::new("DescriptorUnreadable", format!("descriptor {index}")));
        };
        if flags & INDIRECT != 0 {
            // one level, no NEXT beside it, whole entries up to u16::MAX (2.7.5.3): without
            // that bound a looping table of 2^28 entries is as good as a hang
            if indirect || flags & NEXT != 0 || len == 0 || len % 16 != 0 || len / 16 > 0xFFFF {
                return Err(Reject::new("InvalidIndirectTable", format!("descriptor {index}: flags {flags:#x}, len {len}")));
            }
            (table, table_size, index, ttl, indirect) = (addr, len / 16, 0, len / 16, true);
            continue;
        }
        total += len;
        if total > 1 << 32 {
            return Err(Reject::new("ChainTooLarge", "more than 2^32 bytes"));
        }
        chain.push(Buf { addr, len, writable: flags & WRITE != 0 });
        if flags & NEXT == 0 {
            return Ok(chain);
        }
        index = next;
    }
}

/// The chain's buffers as one byte stream: a driver may split the header and the data
/// among them any way it likes (2.6.4), Linux 6.17 sends the data in page fragments.
struct Stream<'a> {
    p: &'a Parse<'a>,
    bufs: &'a [Buf],
    i: usize,
    off: u64,
}

impl Stream<'_> {
    fn left(&self) -> u64 {
        self.bufs[self.i..].iter().map(|b| b.len).sum::<u64>() - self.off
    }

    /// The next `n` bytes as host slices, cut where a region ends (each region is its own
    /// host mapping, as in a VMM); `None` when the chain holds fewer.
    fn take(&mut self, mut n: u64) -> Result<Option<Vec<(*mut u8, usize)>>, Reject> {
        if n > self.left() {
            return Ok(None);
        }
        let mut out = Vec::new();
        while n > 0 {
            let b = self.bufs[self.i];
            if self.off == b.len {
                (self.i, self.off) = (self.i + 1, 0);
                continue;
            }
            // tx reads device-readable buffers only, rx writes device-writable ones (2.7.4.1)
            if b.writable != (self.p.queue == QueueKind::Rx) {
                let name = if b.writable { "UnexpectedWriteOnlyDescriptor" } else { "UnexpectedReadOnlyDescriptor" };
                return Err(Reject::new(name, format!("buffer at {:#x}", b.addr)));
            }
            let gpa = b.addr.checked_add(self.off);
            let region = gpa.and_then(|gpa| self.p.memory.region(gpa));
            let (Some(gpa), Some(region)) = (gpa, region) else {
                return Err(Reject::new("InvalidMemoryAccess", format!("buffer at {:#x}", b.addr)));
            };
            let piece = n.min(b.len - self.off).min(region.size() - (gpa - region.gpa()));
            // the piece ends at its region's end at the latest: one mapping holds it
            out.push((self.p.memory.host_ptr(gpa, piece).unwrap(), piece as usize));
            (self.off, n) = (self.off + piece, n - piece);
        }
        Ok(Some(out))
    }
}

/// `n` little-endian bytes of guest memory at `at`, read across adjacent regions.
fn read_le(p: &Parse, at: Option<u64>, n: usize) -> Option<u64> {
    let mut b = [0u8; 8];
    p.memory.read(at?, &mut b[..n])?;
    Some(u64::from_le_bytes(b))
}

/// Whether every byte of `[gpa, gpa + len)` is guest memory (regions may be adjacent).
fn in_memory(p: &Parse, mut gpa: u64, mut len: u64) -> bool {
    while len > 0 {
        let Some(r) = p.memory.region(gpa) else { return false };
        let room = r.size() - (gpa - r.gpa());
        if room >= len {
            return true;
        }
        let Some(next) = gpa.checked_add(room) else { return false };
        (gpa, len) = (next, len - room);
    }
    true
}
