//! The answer devices most often differ by, judged in the core: a chain the spec model accepts,
//! refused. What the Python oracles say of it (`oracles.run._check` on a rejection:
//! interop.linux-rejected, conformance.valid-rejected, differential.model) follows from three
//! facts about the chain, worked out here: it is no Linux driver layout, the traits
//! `oracles.context._Context.layout_traits` names, and whether it goes through an indirect
//! table. The messages stay in Python; `tests/test_core.py` holds the findings identical.
//!
//! Only a chain whose one reading (`model::readings`) accepts, and that cannot be a Linux
//! layout: a Linux layout refused is interop's, whose content probes ask the target again.
//! That test is `oracles.interop.linux_shape`'s first half (the shapes' lengths and the tx
//! header), so it answers "maybe" for a few chains the Python oracles then judge.

use vsock_fuzz_case::{unpack_header, Case, DESC_SIZE, F_INDIRECT, F_WRITE, HEADER_SIZE};

use crate::model::{readings_of, Answer, Descriptor, Offer, Walked};

const PAGE: u128 = 4096;
const LINUX_RX_BUF: u128 = 4096; // VIRTIO_VSOCK_DEFAULT_RX_BUF_SIZE
const LINUX_LINEAR_MAX: u128 = 8 * PAGE;
const MAX_PKT_BUF_SIZE: u128 = 64 * 1024;
const CID_HOST: u128 = 2;
const TYPE_STREAM: u128 = 1;
const TYPE_SEQPACKET: u128 = 2;
const OP_RW: u128 = 5;

/// What the oracles need of a refused chain: the model's answer, the chain's layout traits and
/// whether it is indirect.
pub struct Refusal {
    pub model: Answer,
    pub traits: Vec<String>,
    pub indirect: bool,
}

/// The refusal's facts when a device with `offer` refusing `case` is judged by them alone
/// (None: the Python oracles judge it).
pub fn refusal(case: &Case, offer: &Offer) -> Option<Refusal> {
    let w = Walked::new(case);
    let mut readings = readings_of(&w, offer);
    if readings.len() != 1 || !matches!(readings[0], Answer::Accepted { .. }) {
        return None;
    }
    let model = readings.remove(0);
    let descs = &w.chain.0; // accepted: the whole chain, well-formed
    if maybe_linux(&w, descs) {
        return None;
    }
    // `_Context.indirect`: a walk that ignores INDIRECT reads such a descriptor as a buffer.
    let plain = Walked::chain_of(&w.mem, case, false);
    Some(Refusal { model, traits: layout_traits(&w, descs), indirect: plain.0.iter().any(|d| d.flags & F_INDIRECT != 0) })
}

/// `layout.is_linux_header`: a header a Linux guest may send.
fn is_linux_header(h: &[u128; 10]) -> bool {
    let [src_cid, dst_cid, _, _, len, kind, op, ..] = *h;
    if dst_cid != CID_HOST || !(3..0xFFFF_FFFF).contains(&src_cid) {
        return false;
    }
    if !(kind == TYPE_STREAM || kind == TYPE_SEQPACKET) || !(1..=7).contains(&op) || len > MAX_PKT_BUF_SIZE {
        return false;
    }
    if op == OP_RW {
        len > 0 || kind == TYPE_SEQPACKET
    } else {
        len == 0
    }
}

/// Whether the chain has the lengths (and, on tx, the header) of a Linux layout: true for every
/// chain `oracles.interop.linux_shape` names, and for a few it then rules out.
fn maybe_linux(w: &Walked, descs: &[Descriptor]) -> bool {
    let case = w.case;
    let lens: Vec<u128> = descs.iter().map(|d| d.len).collect();
    if lens.is_empty() {
        return false;
    }
    if case.rx {
        return case.max_data_size >= LINUX_RX_BUF
            && (lens == [HEADER_SIZE + LINUX_RX_BUF] || lens == [HEADER_SIZE, LINUX_RX_BUF]);
    }
    if lens[0] < HEADER_SIZE {
        return false;
    }
    let Some(raw) = w.mem.read(descs[0].addr, HEADER_SIZE as usize) else { return false };
    let h = unpack_header(&raw);
    let n = h[4];
    if n > case.max_data_size || !is_linux_header(&h) {
        return false;
    }
    let rest = &lens[1..];
    lens == [HEADER_SIZE + n]
        || lens == [HEADER_SIZE, n]
        || (lens[0] == HEADER_SIZE && rest.len() > 1 && n > LINUX_LINEAR_MAX && rest.iter().all(|&k| k <= PAGE)
            && rest.iter().sum::<u128>() == n)
}

/// `_Context.layout_traits` of a well-formed chain: what is unusual about it.
fn layout_traits(w: &Walked, descs: &[Descriptor]) -> Vec<String> {
    let (case, mem) = (w.case, &w.mem);
    let tx = !case.rx;
    let used: Vec<&Descriptor> = descs.iter().filter(|d| d.len != 0).collect();
    let total: u128 = used.iter().map(|d| d.len).sum();
    let cut = |d: &&Descriptor| mem.slices(d.addr, d.len);
    let mut out = Vec::new();
    if used.first().is_some_and(|d| d.len < HEADER_SIZE) {
        let (mut n, mut k) = (0, 0);
        while n < HEADER_SIZE && k < used.len() {
            n += used[k].len;
            k += 1;
        }
        out.push(format!("header split over {k} descriptors"));
    }
    if descs.len() != used.len() {
        out.push("zero-length descriptors".into());
    }
    if used.len() > 2 {
        out.push(format!("{} descriptors", used.len()));
    }
    if used.iter().any(|d| cut(d).is_some_and(|s| s.len() > 1)) {
        out.push("a buffer crossing adjacent regions".into());
    }
    if total >= 1 << 32 {
        out.push("a chain of 2^32 bytes (the spec's limit, one past u32::MAX)".into());
    }
    if !tx && total == HEADER_SIZE {
        out.push("an rx buffer with room for the header only".into());
    }
    if !tx && total > HEADER_SIZE + case.max_data_size {
        out.push("rx buffers longer than the header plus max_data_size".into());
    }
    if used.iter().any(|d| cut(d).is_none()) {
        out.push("a buffer running out of guest memory past the bytes the packet uses".into());
    }
    if tx && used.len() > 1 && used[0].len > HEADER_SIZE {
        out.push("payload in the head descriptor and more descriptors after it".into());
    }
    if used.iter().any(|d| (d.flags & F_WRITE != 0) == tx) {
        out.push(format!("{} descriptors after the packet", if tx { "writable" } else { "readable" }));
    }
    let at = case.ring.desc_table + DESC_SIZE * case.ring.head;
    let mut raw = [0u8; DESC_SIZE as usize];
    if mem.read_into(at, &mut raw) && u16::from_le_bytes([raw[12], raw[13]]) & F_INDIRECT != 0 {
        out.push("indirect table".into());
    }
    out
}
