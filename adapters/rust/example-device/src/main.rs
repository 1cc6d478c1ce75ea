//! The README's example: a (deliberately simple) device wrapped as a vsock-fuzz target.
//! It takes the head from the available ring, reads the header from the head descriptor
//! and the payload from the one after it. Swap `parse` for a call into your own device.
use vsock_fuzz_adapter::{run, Header, Packet, Parse, QueueKind, Reject, Target, HEADER_SIZE};

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |v, &x| v << 8 | x as u64)
}

/// Descriptor `i` of the table as (addr, len, flags, next).
fn desc(p: &Parse, i: u64) -> Result<(u64, u64, u64, u64), Reject> {
    let mut d = [0u8; 16];
    let at = p.ring.desc_table.checked_add(16 * i).filter(|_| i < p.ring.size);
    at.and_then(|at| p.memory.read(at, &mut d)).ok_or_else(|| Reject::new("BadDescriptor", format!("index {i}")))?;
    Ok((le(&d[..8]), le(&d[8..12]), le(&d[12..14]), le(&d[14..])))
}

fn parse(p: &Parse) -> Result<Packet, Reject> {
    let mut ring = [0u8; 2];
    let head = p.ring.avail.checked_add(4).and_then(|at| p.memory.read(at, &mut ring));
    // A crash-prone twin for benchmarks/bench_gap.py (built with --features panic-on-unmapped-avail):
    // libkrun panicked on an unmapped available ring, a common case among what a fuzzer makes.
    if head.is_none() && cfg!(feature = "panic-on-unmapped-avail") {
        panic!("available ring at {:#x} is not in guest memory", p.ring.avail);
    }
    head.ok_or_else(|| Reject::new("BadRing", "avail ring"))?;
    let (addr, len, flags, next) = desc(p, le(&ring))?;
    let ptr = p.memory.host_ptr(addr, HEADER_SIZE as u64);
    let (Some(ptr), true) = (ptr, len >= HEADER_SIZE as u64) else { return Err(Reject::new("BadHeader", "")) };
    let mut pkt = Packet::default();
    pkt.header_host(p.memory, ptr, HEADER_SIZE);
    if p.queue == QueueKind::Tx {
        // SAFETY: host_ptr checked that HEADER_SIZE bytes lie in one mapping
        let h = Header::from_bytes(unsafe { &*(ptr as *const [u8; HEADER_SIZE]) });
        if h.len as u64 > p.max_data_size { return Err(Reject::new("TooLong", h.len.to_string())) }
        pkt.header = Some(h);
    }
    if flags & 1 != 0 {
        let (daddr, dlen, _, _) = desc(p, next)?;
        let want = if p.queue == QueueKind::Tx { pkt.header.unwrap().len as u64 } else { dlen.min(p.max_data_size) };
        let dptr = p.memory.host_ptr(daddr, want).ok_or_else(|| Reject::new("BadData", ""))?;
        pkt.data_host(p.memory, dptr, want as usize);
    }
    Ok(pkt)
}

fn main() {
    let target = Target { features: vec!["VIRTIO_F_VERSION_1".into()], max_queue_size: Some(256), ..Target::new("example", "0.1") };
    run(&target, parse);
}
