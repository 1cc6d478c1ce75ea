//! The spec model's answers and readings: `vsock_fuzz/model/{chain,packet}.py`, spec profile.
//!
//! Only what the comparison needs (`oracles.run.agrees`): the verdict, and for an accepted
//! packet its header and slices. A rejection carries the model's error name and class, not
//! its detail: an answer that differs goes to the Python model and oracles, which say why.

use vsock_fuzz_case::{unpack_header, Case, GuestMemory, Header, DESC_SIZE, F_INDIRECT, F_NEXT, F_WRITE, HEADER_SIZE};

const MAX_QUEUE_SIZE: u128 = 32768;
const MAX_INDIRECT_ENTRIES: u128 = 0xFFFF;
const SPEC_MAX_CHAIN_BYTES: u128 = 1 << 32;

pub type Slices = Vec<(u128, u128)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted { header: Option<Header>, header_slices: Slices, data_slices: Slices },
    Rejected { error: &'static str, class: &'static str },
}

/// A rule the chain breaks: the model's error name and class (`chain.ChainError`).
type Broken = (&'static str, &'static str);

#[derive(Clone, Copy, Debug)]
pub struct Descriptor {
    pub addr: u128,
    pub len: u128,
    pub flags: u16,
    next: u16,
}

/// What the device offers (`model.device.Device`): only what the readings read.
#[derive(Clone, Copy, Debug)]
pub struct Offer {
    pub described: bool, // false: no description, every feature offered
    pub indirect: bool,
    pub seqpacket: bool,
    pub max_queue_size: u128,
}

/// `chain.check_queue`: the queue set-up a device validates before it pops anything.
fn check_queue(mem: &GuestMemory<'_>, case: &Case) -> Result<(), Broken> {
    let r = &case.ring;
    let size = r.size;
    if size == 0 || size > MAX_QUEUE_SIZE || size & (size - 1) != 0 {
        return Err(("InvalidQueueSize", "queue"));
    }
    for (addr, align, len) in [(r.desc_table, 16, DESC_SIZE * size), (r.avail, 2, 6 + 2 * size), (r.used, 4, 6 + 8 * size)] {
        if addr % align != 0 {
            return Err(("MisalignedRing", "queue"));
        }
        if mem.slices(addr, len).is_none() {
            return Err(("RingOutOfMemory", "queue"));
        }
    }
    if r.head >= size {
        return Err(("InvalidHead", "queue"));
    }
    Ok(())
}

const TOO_LONG: Broken = ("ChainTooLong", "chain");
const TOO_LARGE: Broken = ("ChainTooLarge", "length");

/// `chain.walk` under the spec's rules from `head`: the buffers up to the first rule the chain
/// breaks, and that rule. `tables: false` reads INDIRECT descriptors as plain buffers. A loop
/// is not replayed: its descriptors were yielded once already, and the spec model rejects the
/// chain, so only the rule it ends with matters.
fn walk(mem: &GuestMemory<'_>, desc_table: u128, size: u128, head: u128, tables: bool) -> (Vec<Descriptor>, Option<Broken>) {
    let mut out = Vec::new();
    let (mut table, mut table_size, mut index) = (desc_table, size, head);
    let mut ttl = size.min(1 << 16);
    let mut indirect = false;
    let mut total: u128 = 0;
    let mut steps: Vec<u128> = Vec::new(); // this table's lengths in walk order
    // A BTreeMap, not a HashMap: its code is instrumented with the rest, and a random hash seed
    // would make the same input take other edges in another process.
    let mut seen: std::collections::BTreeMap<u128, usize> = std::collections::BTreeMap::new();
    loop {
        if index >= table_size {
            return (out, Some(("DescriptorIndexOutOfRange", "chain")));
        }
        if ttl == 0 {
            return (out, Some(TOO_LONG));
        }
        ttl -= 1;
        let at = table + DESC_SIZE * index;
        if let Some(&i) = seen.get(&at) {
            // The rest of the walk is steps[i..] over and over for ttl + 1 steps, unless the
            // byte bound ends it first.
            let cycle = &steps[i..];
            for k in 0..=ttl {
                total += cycle[(k % cycle.len() as u128) as usize];
                if total > SPEC_MAX_CHAIN_BYTES {
                    return (out, Some(TOO_LARGE));
                }
            }
            return (out, Some(TOO_LONG));
        }
        let mut raw = [0u8; DESC_SIZE as usize];
        if !mem.read_into(at, &mut raw) {
            return (out, Some(("DescriptorUnreadable", "memory")));
        }
        let le = |b: &[u8]| b.iter().rev().fold(0u128, |v, &x| v << 8 | x as u128);
        let d = Descriptor { addr: le(&raw[..8]), len: le(&raw[8..12]), flags: le(&raw[12..14]) as u16, next: le(&raw[14..]) as u16 };
        if d.flags & F_INDIRECT != 0 && tables {
            if indirect {
                return (out, Some(("NestedIndirect", "chain")));
            }
            if d.flags & F_NEXT != 0 {
                return (out, Some(("IndirectWithNext", "chain")));
            }
            if d.len == 0 || d.len % DESC_SIZE != 0 || d.len / DESC_SIZE > MAX_INDIRECT_ENTRIES {
                return (out, Some(("InvalidIndirectTable", "chain")));
            }
            (table, table_size, index) = (d.addr, d.len / DESC_SIZE, 0);
            ttl = table_size;
            indirect = true;
            steps.clear();
            seen.clear();
            continue;
        }
        total += d.len;
        if total > SPEC_MAX_CHAIN_BYTES {
            return (out, Some(TOO_LARGE));
        }
        out.push(d);
        if d.flags & F_NEXT == 0 {
            return (out, None);
        }
        seen.insert(at, steps.len());
        steps.push(d.len);
        index = d.next as u128;
    }
}

/// One case's memory and chains, each walked once (`chain.Walked`).
pub struct Walked<'a> {
    pub case: &'a Case,
    pub mem: GuestMemory<'a>,
    queue: Result<(), Broken>,
    pub chain: (Vec<Descriptor>, Option<Broken>),
}

impl<'a> Walked<'a> {
    pub fn new(case: &'a Case) -> Walked<'a> {
        let mem = GuestMemory::new(&case.regions, &case.writes);
        let queue = check_queue(&mem, case);
        let chain = if queue.is_ok() { Walked::chain_of(&mem, case, true) } else { (Vec::new(), None) };
        Walked { case, mem, queue, chain }
    }

    /// The available ring holds the head as a le16: the walk starts at head mod 2^16.
    pub fn chain_of(mem: &GuestMemory<'_>, case: &Case, tables: bool) -> (Vec<Descriptor>, Option<Broken>) {
        let r = &case.ring;
        walk(mem, r.desc_table, r.size, r.head & 0xFFFF, tables)
    }
}

fn reject((error, class): Broken) -> Answer {
    Answer::Rejected { error, class }
}

/// `packet._parse` under the spec profile, on the chain `chain` (the followed or the plain walk).
fn parse_spec(w: &Walked, chain: &(Vec<Descriptor>, Option<Broken>), offer: &Offer) -> Answer {
    let case = w.case;
    if case.ring.size > offer.max_queue_size && offer.max_queue_size < MAX_QUEUE_SIZE {
        return reject(("QueueSizeAboveMaximum", "queue"));
    }
    if let Err(e) = w.queue {
        return reject(e);
    }
    if let Some(e) = chain.1 {
        return reject(e);
    }
    let mut stream = Stream::new(&chain.0, &w.mem, case.rx);
    let header_slices = match stream.take(HEADER_SIZE) {
        Ok(Some(s)) => s,
        Ok(None) => return reject(("HeaderTooShort", "length")),
        Err(e) => return reject(e),
    };
    if case.rx {
        return match stream.take(stream.left.min(case.max_data_size)) {
            Ok(Some(data_slices)) => Answer::Accepted { header: None, header_slices, data_slices },
            Ok(None) => unreachable!("at most what is left"),
            Err(e) => reject(e),
        };
    }
    let mut raw = Vec::with_capacity(HEADER_SIZE as usize);
    for &(gpa, n) in &header_slices {
        raw.extend(w.mem.read(gpa, n as usize).expect("the stream's slices are mapped"));
    }
    let header = unpack_header(&raw);
    let len = header[4];
    if len > case.max_data_size {
        return reject(("InvalidHeaderLen", "length"));
    }
    match stream.take(len) {
        Ok(Some(data_slices)) => Answer::Accepted { header: Some(header), header_slices, data_slices },
        Ok(None) => reject(("DataTooShort", "length")),
        Err(e) => reject(e),
    }
}

/// `packet._Stream`: the chain's buffers as one byte stream, consumed front to back.
struct Stream<'a> {
    descs: Vec<&'a Descriptor>,
    mem: &'a GuestMemory<'a>,
    rx: bool,
    i: usize,
    off: u128,
    left: u128,
}

impl<'a> Stream<'a> {
    fn new(chain: &'a [Descriptor], mem: &'a GuestMemory<'a>, rx: bool) -> Stream<'a> {
        let descs: Vec<&Descriptor> = chain.iter().filter(|d| d.len != 0).collect();
        let left = descs.iter().map(|d| d.len).sum();
        Stream { descs, mem, rx, i: 0, off: 0, left }
    }

    fn take(&mut self, mut n: u128) -> Result<Option<Slices>, Broken> {
        if n > self.left {
            return Ok(None);
        }
        self.left -= n;
        let want = if self.rx { F_WRITE } else { 0 };
        let mut out = Vec::new();
        while n > 0 {
            let d = self.descs[self.i];
            // 5.10.6 / 2.7.4.1: tx buffers are device-readable, rx buffers device-writable.
            if d.flags & F_WRITE != want {
                return Err(if self.rx {
                    ("UnexpectedReadOnlyDescriptor", "permission")
                } else {
                    ("UnexpectedWriteOnlyDescriptor", "permission")
                });
            }
            let piece = n.min(d.len - self.off);
            let addr = d.addr + self.off;
            match self.mem.slices(addr, piece) {
                Some(cut) => out.extend(cut),
                None => return Err(("InvalidMemoryAccess", "memory")),
            }
            n -= piece;
            self.off += piece;
            if self.off == d.len {
                self.i += 1;
                self.off = 0;
            }
        }
        Ok(Some(out))
    }
}

const TYPE_SEQPACKET: u128 = 2;

/// `packet.readings`, spec profile: the model's answer first, then the other answers the
/// device's offer makes legal.
pub fn readings(case: &Case, offer: &Offer) -> Vec<Answer> {
    readings_of(&Walked::new(case), offer)
}

/// `readings` of a case already walked.
pub fn readings_of(w: &Walked, offer: &Offer) -> Vec<Answer> {
    let case = w.case;
    let mut out = vec![parse_spec(w, &w.chain, offer)];
    if !offer.described {
        return out;
    }
    if !offer.indirect {
        // The plain walk runs whatever the queue set-up says, as chain.Walked.chain does.
        let plain = Walked::chain_of(&w.mem, case, false);
        if plain.0.iter().any(|d| d.flags & F_INDIRECT != 0) {
            out.push(parse_spec(w, &plain, offer));
            out.push(reject(("IndirectNotOffered", "chain")));
        }
    }
    let seqpacket = |a: &Answer| matches!(a, Answer::Accepted { header: Some(h), .. } if h[5] == TYPE_SEQPACKET);
    if !offer.seqpacket && out.iter().any(seqpacket) {
        out.push(reject(("SeqpacketNotOffered", "chain")));
    }
    out
}
