//! The chain a split virtqueue's available ring names, popped as a transport does
//! (virtio 1.2, 2.7), and its buffers read as one byte stream.
//!
//! [`pop_chain`] checks the queue as the driver configured it and walks the whole chain,
//! following an indirect table; [`Stream`] hands the buffers' bytes out in order as host
//! slices. What is left to the device is its parsing:
//!
//! ```no_run
//! use vsock_fuzz_adapter::chain::{pop_chain, Buf, Stream};
//! use vsock_fuzz_adapter::{run, Packet, Parse, QueueKind, Reject, Target, HEADER_SIZE};
//! fn main() {
//!     run(&Target::new("my-vmm vsock", "1.0"), |p: &Parse| -> Result<Packet, Reject> {
//!         let chain = pop_chain(p, 256)?;
//!         let rx = p.queue == QueueKind::Rx;
//!         let mut stream = Stream::new(p.memory, &chain, |b: &Buf| {
//!             if b.writable == rx {
//!                 return Ok(());
//!             }
//!             let name = if rx { "ReadOnlyBuffer" } else { "WriteOnlyBuffer" };
//!             Err(Reject::new(name, format!("buffer at {:#x}", b.addr)))
//!         });
//!         let header = stream.take(HEADER_SIZE as u64)?.ok_or_else(|| Reject::new("HeaderTooShort", ""))?;
//!         let mut pkt = Packet::default();
//!         for (ptr, len) in header {
//!             pkt.header_host(p.memory, ptr, len);
//!         }
//!         Ok(pkt)
//!     })
//! }
//! ```

use crate::{GuestMemory, Parse, Reject};

/// The largest split queue there is (2.7: the queue size is at most 32768).
pub const MAX_QUEUE_SIZE: u64 = 32768;

/// The most bytes a chain holds in all (2.7.13.1).
pub const MAX_CHAIN_BYTES: u64 = 1 << 32;

/// The most entries an indirect table may have. The spec sets none; virtio-queue stops at
/// u16::MAX, and without a bound a table of 2^28 entries that loops is as good as a hang.
pub const MAX_INDIRECT_ENTRIES: u64 = 0xFFFF;

const DESC_SIZE: u64 = 16;
const NEXT: u64 = 1;
const WRITE: u64 = 2;
const INDIRECT: u64 = 4;

/// One buffer of a chain (a descriptor that is not an indirect table), in the order the
/// driver chained them. Its memory is not checked until it is read: a chain may name
/// buffers its packet never reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf {
    /// Guest-physical address of its first byte.
    pub addr: u64,
    /// Its length in bytes, as the descriptor says.
    pub len: u64,
    /// VIRTQ_DESC_F_WRITE: device-writable (an rx buffer) rather than device-readable (tx).
    pub writable: bool,
}

/// Pop the chain the available ring's entry names and walk it to its end, as a transport
/// does: a malformed chain is refused even past the packet, as the harness expects.
///
/// The head is `ring[0]` of the available ring as the driver wrote it in guest memory, not
/// `p.ring.head`. `max_queue_size` is the largest queue your transport accepts (more than
/// [`MAX_QUEUE_SIZE`] counts as that). The refusals, in the order they are checked:
///
/// - `InvalidQueueSize`: the size is 0, no power of 2 (2.7) or over `max_queue_size`.
/// - `MisalignedRing`: the descriptor table is not 16-aligned, the available ring 2-aligned
///   or the used ring 4-aligned (2.7.2).
/// - `RingOutOfMemory`: a ring, as long as the queue size makes it, is not all guest
///   memory (it may lie across adjacent regions).
/// - `InvalidHead`: the head is no index into the descriptor table.
/// - `DescriptorIndexOutOfRange`: a `next` is no index into its table (the descriptor
///   table, or the indirect table it is in).
/// - `ChainTooLong`: more descriptors than their table holds, which a chain without a
///   loop never has (2.7.13.1: a chain is no longer than the queue size).
/// - `DescriptorUnreadable`: a descriptor is not guest memory (an indirect table is only
///   where its descriptor says).
/// - `InvalidIndirectTable`: an INDIRECT descriptor inside an indirect table or with NEXT
///   set (2.7.5.3.1: one level; not both flags), a length that is no non-zero multiple of
///   16 (2.7.5.3: the table is len/16 descriptors), or over [`MAX_INDIRECT_ENTRIES`]
///   entries. WRITE on it is ignored (2.7.5.3.2).
/// - `ChainTooLarge`: the buffers add up to more than [`MAX_CHAIN_BYTES`] (2.7.13.1).
///
/// The chain returned holds at least one buffer (possibly of length 0).
pub fn pop_chain(p: &Parse, max_queue_size: u64) -> Result<Vec<Buf>, Reject> {
    let (r, mem) = (p.ring, p.memory);
    if r.size == 0 || r.size > max_queue_size.min(MAX_QUEUE_SIZE) || !r.size.is_power_of_two() {
        return Err(Reject::new("InvalidQueueSize", format!("queue size {}", r.size)));
    }
    let rings = [
        ("descriptor table", r.desc_table, 16, DESC_SIZE * r.size),
        ("available ring", r.avail, 2, 6 + 2 * r.size),
        ("used ring", r.used, 4, 6 + 8 * r.size),
    ];
    for (name, at, align, len) in rings {
        if at % align != 0 {
            return Err(Reject::new("MisalignedRing", format!("{name} at {at:#x}")));
        }
        if !mem.contains(at, len) {
            return Err(Reject::new("RingOutOfMemory", format!("{name} at {at:#x}")));
        }
    }
    // the driver's one entry, ring[0]; the whole available ring is guest memory (above)
    let head = mem.read_le(r.avail + 4, 2).expect("the available ring is in memory");
    if head >= r.size {
        return Err(Reject::new("InvalidHead", format!("head {head}")));
    }
    let (mut table, mut table_size, mut index, mut ttl) = (r.desc_table, r.size, head, r.size);
    let (mut indirect, mut total, mut chain) = (false, 0, Vec::new());
    loop {
        if index >= table_size {
            return Err(Reject::new("DescriptorIndexOutOfRange", format!("next {index} >= {table_size}")));
        }
        // a chain without a loop visits each descriptor of its table once at most
        if ttl == 0 {
            return Err(Reject::new("ChainTooLong", "longer than its table: a loop?"));
        }
        ttl -= 1;
        let field = |off, n| table.checked_add(DESC_SIZE * index + off).and_then(|at| mem.read_le(at, n));
        let (Some(addr), Some(len), Some(flags), Some(next)) = (field(0, 8), field(8, 4), field(12, 2), field(14, 2))
        else {
            return Err(Reject::new("DescriptorUnreadable", format!("descriptor {index}")));
        };
        if flags & INDIRECT != 0 {
            if indirect || flags & NEXT != 0 || len == 0 || len % DESC_SIZE != 0 || len / DESC_SIZE > MAX_INDIRECT_ENTRIES {
                return Err(Reject::new("InvalidIndirectTable", format!("descriptor {index}: flags {flags:#x}, len {len}")));
            }
            (table, table_size, index, ttl, indirect) = (addr, len / DESC_SIZE, 0, len / DESC_SIZE, true);
            continue;
        }
        total += len;
        if total > MAX_CHAIN_BYTES {
            return Err(Reject::new("ChainTooLarge", "more than 2^32 bytes"));
        }
        chain.push(Buf { addr, len, writable: flags & WRITE != 0 });
        if flags & NEXT == 0 {
            return Ok(chain);
        }
        index = next;
    }
}

/// A chain's buffers as one byte stream. A driver may split the header and the data among
/// them any way it likes (2.7.4): Linux 6.17 sends the data in page fragments.
///
/// `check` is called on a buffer each time a piece of it is about to be taken, before its
/// memory is looked at; its error ends the take. That is where a device checks a buffer's
/// direction (2.7.4.1: tx reads device-readable buffers, rx writes device-writable ones),
/// or `|_| Ok(())` takes every buffer as it is.
pub struct Stream<'a, F> {
    memory: &'a GuestMemory,
    bufs: &'a [Buf],
    check: F,
    /// The buffer the next byte is in, and how far into it.
    i: usize,
    off: u64,
}

impl<'a, F: FnMut(&Buf) -> Result<(), Reject>> Stream<'a, F> {
    /// The bytes of `bufs` (a chain from [`pop_chain`]) in `memory`, from the first.
    pub fn new(memory: &'a GuestMemory, bufs: &'a [Buf], check: F) -> Self {
        Stream { memory, bufs, check, i: 0, off: 0 }
    }

    /// Bytes not taken yet.
    pub fn left(&self) -> u64 {
        let rest = self.bufs.get(self.i..).unwrap_or_default();
        rest.iter().fold(0u64, |n, b| n.saturating_add(b.len)) - self.off
    }

    /// The next `n` bytes as host slices `(pointer, length)` in order, or `None` when fewer
    /// are left (nothing is taken then). A slice ends where its buffer ends or where its
    /// region ends, whichever comes first: each region is its own host mapping, as in a
    /// VMM, so one pointer never reaches into the next region. A byte that is not guest
    /// memory is `InvalidMemoryAccess`.
    ///
    /// The pointers stay valid until the case ends (the kit's next call into the device).
    pub fn take(&mut self, mut n: u64) -> Result<Option<Vec<(*mut u8, usize)>>, Reject> {
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
            (self.check)(&b)?;
            let gpa = b.addr.checked_add(self.off);
            let region = gpa.and_then(|gpa| self.memory.region(gpa));
            let (Some(gpa), Some(region)) = (gpa, region) else {
                return Err(Reject::new("InvalidMemoryAccess", format!("buffer at {:#x}", b.addr)));
            };
            let piece = n.min(b.len - self.off).min(region.size() - (gpa - region.gpa()));
            // the piece ends at its region's end at the latest: one mapping holds it
            out.push((self.memory.host_ptr(gpa, piece).unwrap(), piece as usize));
            (self.off, n) = (self.off + piece, n - piece);
        }
        Ok(Some(out))
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::{QueueKind, Ring};

    const RINGS: Ring = Ring { size: 4, desc_table: 0x1000, avail: 0x1100, used: 0x1200, head: 0 };

    fn desc(addr: u64, len: u32, flags: u64, next: u16) -> Vec<u8> {
        let mut d = addr.to_le_bytes().to_vec();
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&(flags as u16).to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        d
    }

    /// Two adjacent regions, as the harness builds them: the rings of `RINGS` in the first,
    /// buffers and indirect tables in the second. `writes` are `(gpa, bytes)` applied in
    /// order after the available ring (`idx = 1, ring[0] = head`).
    fn memory(head: u16, writes: &[(u64, Vec<u8>)]) -> GuestMemory {
        let mut m = GuestMemory::default();
        m.set_up(&[(0x1000, 0x1000), (0x2000, 0x1000)]).unwrap();
        m.write(RINGS.avail, &[0, 0, 1, 0, head as u8, (head >> 8) as u8]).unwrap();
        for (gpa, d) in writes {
            m.write(*gpa, d).unwrap();
        }
        m
    }

    /// Descriptor `i` of the descriptor table.
    fn at(i: u64) -> u64 {
        RINGS.desc_table + DESC_SIZE * i
    }

    fn pop(mem: &GuestMemory, ring: Ring) -> Result<Vec<Buf>, Reject> {
        pop_chain(&Parse { queue: QueueKind::Tx, max_data_size: 65536, ring, memory: mem }, MAX_QUEUE_SIZE)
    }

    fn error(r: Result<Vec<Buf>, Reject>) -> String {
        r.unwrap_err().error.into_owned()
    }

    fn buf(addr: u64, len: u64, writable: bool) -> Buf {
        Buf { addr, len, writable }
    }

    #[test]
    fn the_chain_is_its_buffers_in_order_from_the_rings_head() {
        let m = memory(1, &[
            (at(1), desc(0x2000, 44, NEXT, 3)),
            (at(3), desc(0x2100, 10, NEXT | WRITE, 0)),
            (at(0), desc(0x2200, 0, 0, 2)), // no NEXT: `next` is not followed
        ]);
        // ring[0] names the head, not `Ring::head`
        let chain = pop(&m, Ring { head: 2, ..RINGS }).unwrap();
        assert_eq!(chain, [buf(0x2000, 44, false), buf(0x2100, 10, true), buf(0x2200, 0, false)]);
    }

    #[test]
    fn the_queue_size_is_a_power_of_2_up_to_the_transports_limit() {
        let m = memory(0, &[(at(0), desc(0x2000, 44, 0, 0))]);
        for size in [0, 3, 6, 65536, 1 << 63] {
            assert_eq!(error(pop(&m, Ring { size, ..RINGS })), "InvalidQueueSize", "size {size}");
        }
        let p = Parse { queue: QueueKind::Tx, max_data_size: 0, ring: Ring { size: 8, ..RINGS }, memory: &m };
        assert_eq!(error(pop_chain(&p, 4)), "InvalidQueueSize");
        assert_eq!(pop_chain(&p, 8).unwrap().len(), 1);
        // no transport takes more than the spec allows
        let p = Parse { ring: Ring { size: 65536, ..RINGS }, ..p };
        assert_eq!(error(pop_chain(&p, u64::MAX)), "InvalidQueueSize");
        assert_eq!(pop(&m, Ring { size: 1, ..RINGS }).unwrap().len(), 1);
    }

    #[test]
    fn the_rings_are_aligned_and_in_memory() {
        let m = memory(0, &[(at(0), desc(0x2000, 44, 0, 0))]);
        for ring in [
            Ring { desc_table: 0x1008, ..RINGS },
            Ring { avail: 0x1101, ..RINGS },
            Ring { used: 0x1202, ..RINGS },
        ] {
            assert_eq!(error(pop(&m, ring)), "MisalignedRing", "{ring:?}");
        }
        // each ring as long as the queue size makes it: 16 * 4, 6 + 2 * 4, 6 + 8 * 4 bytes
        for ring in [
            Ring { desc_table: 0x2fd0, ..RINGS },
            Ring { avail: 0x2ff4, ..RINGS },
            Ring { used: 0x2fdc, ..RINGS },
            Ring { used: 0x8000, ..RINGS },
        ] {
            assert_eq!(error(pop(&m, ring)), "RingOutOfMemory", "{ring:?}");
        }
        // across two adjacent regions, a ring is still all guest memory
        assert!(pop(&m, Ring { used: 0x1ff0, ..RINGS }).is_ok());
        assert!(pop(&m, Ring { used: 0x2fd8, ..RINGS }).is_ok());
    }

    #[test]
    fn the_head_and_every_next_index_their_table() {
        assert_eq!(error(pop(&memory(4, &[]), RINGS)), "InvalidHead");
        let m = memory(0, &[(at(0), desc(0x2000, 44, NEXT, 4))]);
        assert_eq!(error(pop(&m, RINGS)), "DescriptorIndexOutOfRange");
        let m = memory(0, &[
            (at(0), desc(0x2800, 32, INDIRECT, 0)),
            (0x2800, desc(0x2000, 44, NEXT, 2)), // a table of 2
        ]);
        assert_eq!(error(pop(&m, RINGS)), "DescriptorIndexOutOfRange");
    }

    #[test]
    fn a_chain_no_longer_than_its_table_and_a_loop_is_refused() {
        let whole = [
            (at(2), desc(0x2000, 1, NEXT, 0)),
            (at(0), desc(0x2000, 1, NEXT, 3)),
            (at(3), desc(0x2000, 1, NEXT, 1)),
            (at(1), desc(0x2000, 1, 0, 0)),
        ];
        assert_eq!(pop(&memory(2, &whole), RINGS).unwrap().len(), 4);
        let m = memory(0, &[(at(0), desc(0x2000, 1, NEXT, 1)), (at(1), desc(0x2000, 1, NEXT, 0))]);
        assert_eq!(error(pop(&m, RINGS)), "ChainTooLong");
        let self_loop = [(at(0), desc(0x2800, 16, INDIRECT, 0)), (0x2800, desc(0x2000, 1, NEXT, 0))];
        assert_eq!(error(pop(&memory(0, &self_loop), RINGS)), "ChainTooLong");
    }

    #[test]
    fn an_indirect_table_is_followed_in_place_of_its_descriptor() {
        let table = [(0x2800, desc(0x2000, 44, NEXT, 1)), (0x2810, desc(0x2100, 5, WRITE, 0))];
        let want = [buf(0x2000, 44, false), buf(0x2100, 5, true)];
        for flags in [INDIRECT, INDIRECT | WRITE] {
            // WRITE on the table's descriptor says nothing about its buffers
            let m = memory(0, &[&[(at(0), desc(0x2800, 32, flags, 0))], &table[..]].concat());
            assert_eq!(pop(&m, RINGS).unwrap(), want);
        }
        // as many entries as there may be: only those the chain visits are read
        let m = memory(0, &[&[(at(0), desc(0x2800, 16 * 0xFFFF, INDIRECT, 0))], &table[..]].concat());
        assert_eq!(pop(&m, RINGS).unwrap(), want);
    }

    #[test]
    fn an_indirect_table_breaking_a_rule_is_invalid() {
        let bad = [
            (desc(0x2800, 32, INDIRECT | NEXT, 1), desc(0x2000, 44, 0, 0)), // with NEXT
            (desc(0x2800, 32, INDIRECT, 0), desc(0x2900, 16, INDIRECT, 0)), // nested
            (desc(0x2800, 0, INDIRECT, 0), desc(0x2000, 44, 0, 0)),         // empty
            (desc(0x2800, 24, INDIRECT, 0), desc(0x2000, 44, 0, 0)),        // 1.5 entries
            (desc(0x2800, 16 << 16, INDIRECT, 0), desc(0x2000, 44, 0, 0)),  // u16::MAX + 1 entries
        ];
        for (head, entry) in bad {
            let m = memory(0, &[(at(0), head), (at(1), desc(0x2000, 1, 0, 0)), (0x2800, entry)]);
            assert_eq!(error(pop(&m, RINGS)), "InvalidIndirectTable");
        }
    }

    #[test]
    fn a_descriptor_outside_memory_is_unreadable() {
        for table in [0x8000, u64::MAX - 15] {
            let m = memory(0, &[(at(0), desc(table, 32, INDIRECT, 0))]);
            assert_eq!(error(pop(&m, RINGS)), "DescriptorUnreadable", "table at {table:#x}");
        }
    }

    #[test]
    fn a_chain_holds_at_most_2_32_bytes() {
        let chain = |last| memory(0, &[(at(0), desc(0x2000, u32::MAX, NEXT, 1)), (at(1), desc(0x2000, last, 0, 0))]);
        assert_eq!(pop(&chain(1), RINGS).unwrap().len(), 2);
        assert_eq!(error(pop(&chain(2), RINGS)), "ChainTooLarge");
    }

    /// The guest ranges a take's host slices stand for.
    fn ranges(m: &GuestMemory, taken: Option<Vec<(*mut u8, usize)>>) -> Vec<(u64, u64)> {
        taken.unwrap().into_iter().map(|(ptr, len)| m.guest_range(ptr, len)).collect()
    }

    #[test]
    fn the_stream_cuts_at_buffer_and_region_ends() {
        let m = memory(0, &[]);
        let bufs = [buf(0x1ff0, 0x20, false), buf(0x2100, 0, false), buf(0x2200, 8, false)];
        let mut s = Stream::new(&m, &bufs, |_| Ok(()));
        assert_eq!(s.left(), 0x28);
        assert_eq!(ranges(&m, s.take(4).unwrap()), [(0x1ff0, 4)]);
        // region end, buffer end, an empty buffer skipped
        assert_eq!(ranges(&m, s.take(30).unwrap()), [(0x1ff4, 12), (0x2000, 16), (0x2200, 2)]);
        assert_eq!(s.left(), 6);
        assert_eq!(s.take(7).unwrap(), None);
        assert_eq!(s.left(), 6, "a take too long takes nothing");
        assert_eq!(ranges(&m, s.take(6).unwrap()), [(0x2202, 6)]);
        assert_eq!(s.take(0).unwrap(), Some(Vec::new()));
        assert_eq!(s.take(1).unwrap(), None);
        // the pointers are the mappings': what is written there is guest memory
        m.write(0x2ffc, b"tail").unwrap();
        let bufs = [buf(0x2ffc, 4, false)];
        let (ptr, len) = Stream::new(&m, &bufs, |_| Ok(())).take(4).unwrap().unwrap()[0];
        // SAFETY: a slice the stream handed out, inside one live mapping
        assert_eq!(unsafe { std::slice::from_raw_parts(ptr, len) }, b"tail");
    }

    #[test]
    fn the_stream_checks_each_buffer_before_its_memory() {
        let m = memory(0, &[]);
        let bufs = [buf(0x2000, 4, false), buf(0x9000, 4, true), buf(0x2100, 4, false)];
        let mut seen = Vec::new();
        let mut s = Stream::new(&m, &bufs, |b: &Buf| {
            seen.push(b.addr);
            if b.writable {
                return Err(Reject::new("Writable", ""));
            }
            Ok(())
        });
        assert_eq!(s.take(12).unwrap_err().error, "Writable");
        assert_eq!(seen, [0x2000, 0x9000], "checked before its memory, and the take ends there");
        let mut s = Stream::new(&m, &bufs, |_| Ok(()));
        assert_eq!(s.take(12).unwrap_err().error, "InvalidMemoryAccess");
        let past_the_end = [buf(u64::MAX, 2, false)];
        assert_eq!(Stream::new(&m, &past_the_end, |_| Ok(())).take(2).unwrap_err().error, "InvalidMemoryAccess");
    }
}
