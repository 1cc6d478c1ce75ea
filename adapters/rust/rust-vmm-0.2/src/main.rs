//! vsock-fuzz target: rust-vmm `virtio-vsock` 0.2.0 over `virtio-queue` 0.7 and `vm-memory` 0.10 (before vm-virtio #204: it rejects the single-descriptor tx packet of Linux >= 6.2),
//! used as a device uses them: guest memory as a `GuestMemoryMmap`, the queue as the driver
//! configured it, the chain popped from the available ring, `VsockPacket` built from it.

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use virtio_vsock::packet::VsockPacket;
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
use vsock_fuzz_adapter::{run, GuestMemory, Header, Packet, Parse, QueueKind, Reject, Target, MMAP_FLAGS, MMAP_PROT};

/// virtio-queue's own limit (`MAX_QUEUE_SIZE`, the largest split queue the spec allows).
const MAX_QUEUE_SIZE: u16 = 32768;

/// The kit's mappings as vm-memory regions (no copy: the same host memory).
fn guest_memory(mem: &GuestMemory) -> Result<GuestMemoryMmap<()>, Reject> {
    let mut regions = Vec::with_capacity(mem.regions().len());
    for r in mem.regions() {
        let size = usize::try_from(r.size()).map_err(|_| Reject::unsupported("region larger than usize"))?;
        // SAFETY: the kit keeps the mapping alive, with these prot and flags, until the
        // next case; the GuestMemoryMmap is dropped before that (build_raw does not unmap).
        let map = unsafe { MmapRegion::build_raw(r.host(), size, MMAP_PROT, MMAP_FLAGS) }
            .map_err(|e| Reject::unsupported(format!("vm-memory MmapRegion: {e}")))?;
        // vm-memory refuses a region whose end (gpa + size) does not fit a u64, i.e. one
        // ending exactly at 2^64, which the protocol allows: the adapter's limit.
        let region = GuestRegionMmap::new(map, GuestAddress(r.gpa()))
            .map_err(|e| Reject::unsupported(format!("vm-memory cannot hold the region at {:#x} ending at 2^64: {e}", r.gpa())))?;
        regions.push(region);
    }
    GuestMemoryMmap::from_regions(regions).map_err(|e| Reject::unsupported(format!("vm-memory: {e}")))
}

fn parse(p: &Parse) -> Result<Packet, Reject> {
    let mem = guest_memory(p.memory)?;
    // The transport's set-up: a queue size or ring address the Queue refuses is the
    // device refusing the driver's configuration (virtio-queue's error names).
    let mut q = Queue::new(MAX_QUEUE_SIZE).map_err(|e| Reject::of(&e))?;
    let size = u16::try_from(p.ring.size).map_err(|_| Reject::new("InvalidSize", format!("queue size {} does not fit the 16-bit register", p.ring.size)))?;
    q.try_set_size(size).map_err(|e| Reject::of(&e))?;
    q.try_set_desc_table_address(GuestAddress(p.ring.desc_table)).map_err(|e| Reject::of(&e))?;
    q.try_set_avail_ring_address(GuestAddress(p.ring.avail)).map_err(|e| Reject::of(&e))?;
    q.try_set_used_ring_address(GuestAddress(p.ring.used)).map_err(|e| Reject::of(&e))?;
    q.set_ready(true);
    // A VMM checks is_valid when the driver sets DRIVER_OK and does not activate the device.
    if !q.is_valid(&mem) {
        return Err(Reject::new("InvalidQueue", "Queue::is_valid: a ring does not lie inside guest memory"));
    }
    let mut chain = q
        .iter(&mem)
        .map_err(|e| Reject::of(&e))?
        .next()
        .ok_or_else(|| Reject::new("NoAvailableChain", "the available ring yields no chain"))?;
    // hdr.len is a u32: a larger limit is no limit, as in a device configured with u32::MAX
    let max = u32::try_from(p.max_data_size).unwrap_or(u32::MAX);
    let pkt = match p.queue {
        QueueKind::Tx => VsockPacket::from_tx_virtq_chain(&mem, &mut chain, max),
        QueueKind::Rx => VsockPacket::from_rx_virtq_chain(&mem, &mut chain, max),
    }
    .map_err(|e| Reject::of(&e))?;

    let mut out = Packet::default();
    if p.queue == QueueKind::Tx {
        out.header = Some(Header {
            src_cid: pkt.src_cid(),
            dst_cid: pkt.dst_cid(),
            src_port: pkt.src_port(),
            dst_port: pkt.dst_port(),
            len: pkt.len(),
            type_: pkt.type_(),
            op: pkt.op(),
            flags: pkt.flags(),
            buf_alloc: pkt.buf_alloc(),
            fwd_cnt: pkt.fwd_cnt(),
        });
    }
    let h = pkt.header_slice();
    out.header_host(p.memory, h.as_ptr(), h.len());
    if let Some(d) = pkt.data_slice() {
        out.data_host(p.memory, d.as_ptr(), d.len());
    }
    Ok(out)
}

fn main() {
    let target = Target {
        // virtio-queue follows indirect tables (DescriptorChain::switch_to_indirect_table)
        features: vec!["VIRTIO_F_VERSION_1".into(), "VIRTIO_F_INDIRECT_DESC".into()],
        max_queue_size: Some(MAX_QUEUE_SIZE.into()),
        // x86-64 user space is 2^47 bytes: a larger mapping cannot be made
        max_region_size: Some(1 << 46),
        ..Target::new("rust-vmm virtio-vsock", "0.2.0 (virtio-queue 0.7.1, vm-memory 0.10.0)")
    };
    run(&target, parse);
}
