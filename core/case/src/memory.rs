//! Guest memory as the model reads it: `vsock_fuzz/model/memory.py` without the access log
//! (only the oracles read the log, and they run in Python).

use crate::case::{Region, Write, U64};

pub struct GuestMemory<'a> {
    starts: Vec<u128>,
    ends: Vec<u128>,
    /// The writes flattened into disjoint (start, end, bytes) pieces by address; later writes win.
    /// The bytes are the case's own, borrowed: a case may write a 64 KiB payload the model never reads.
    pieces: Vec<(u128, u128, &'a [u8])>,
}

impl<'a> GuestMemory<'a> {
    pub fn new(regions: &[Region], writes: &'a [Write]) -> GuestMemory<'a> {
        let mut sorted = regions.to_vec();
        sorted.sort();
        let mut mem = GuestMemory {
            starts: sorted.iter().map(|r| r.gpa).collect(),
            ends: sorted.iter().map(|r| r.end()).collect(),
            pieces: Vec::with_capacity(writes.len()),
        };
        for w in writes.iter().filter(|w| !w.data.is_empty()) {
            mem.put(w.gpa, &w.data);
        }
        mem
    }

    fn put(&mut self, gpa: u128, data: &'a [u8]) {
        let end = gpa + data.len() as u128;
        let i = self.pieces.partition_point(|p| p.1 <= gpa); // the first piece ending after gpa
        let j = self.pieces.partition_point(|p| p.0 < end); // pieces[i..j] overlap [gpa, end)
        let mut new = Vec::with_capacity(3);
        if i < j {
            let (s, _, d) = &self.pieces[i];
            if *s < gpa {
                new.push((*s, gpa, &d[..(gpa - s) as usize]));
            }
        }
        new.push((gpa, end, data));
        if i < j {
            let (s, e, d) = &self.pieces[j - 1];
            if *e > end {
                new.push((end, *e, &d[(end - s) as usize..]));
            }
        }
        self.pieces.splice(i..j.max(i), new);
    }

    /// Index into `starts` of the region holding `gpa`.
    fn region_of(&self, gpa: u128) -> Option<usize> {
        let i = self.starts.partition_point(|&s| s <= gpa).checked_sub(1)?;
        (gpa < self.ends[i]).then_some(i)
    }

    /// [gpa, gpa+size) cut at region boundaries, or None if any byte is unmapped (`slices`).
    pub fn slices(&self, gpa: u128, size: u128) -> Option<Vec<(u128, u128)>> {
        let end = gpa + size;
        let mut i = self.region_of(gpa)?;
        if end <= self.ends[i] {
            return Some(vec![(gpa, size)]);
        }
        if end > U64 {
            return None;
        }
        let mut out = vec![(gpa, self.ends[i] - gpa)];
        let mut at = self.ends[i];
        i += 1;
        while at < end {
            if i == self.starts.len() || self.starts[i] != at {
                return None; // a hole before `end`
            }
            let piece = end.min(self.ends[i]) - at;
            out.push((at, piece));
            at += piece;
            i += 1;
        }
        Some(out)
    }

    /// The bytes at [gpa, gpa+size), unwritten ones zero; None if unmapped.
    pub fn read(&self, gpa: u128, size: usize) -> Option<Vec<u8>> {
        let mut out = vec![0u8; size];
        self.read_into(gpa, &mut out).then_some(out)
    }

    /// `read` into `out` (its length the size), without allocating: a walk reads every
    /// descriptor so. False, `out` unchanged, if unmapped.
    pub fn read_into(&self, gpa: u128, out: &mut [u8]) -> bool {
        let size = out.len();
        let end = gpa + size as u128;
        let inside = self.region_of(gpa).is_some_and(|i| end <= self.ends[i]);
        if !inside && size > 0 && self.slices(gpa, size as u128).is_none() {
            return false;
        }
        out.fill(0);
        let first = self.pieces.partition_point(|p| p.1 <= gpa);
        for (s, e, d) in self.pieces[first..].iter().take_while(|p| p.0 < end) {
            let (lo, hi) = ((*s).max(gpa), (*e).min(end));
            out[(lo - gpa) as usize..(hi - gpa) as usize].copy_from_slice(&d[(lo - s) as usize..(hi - s) as usize]);
        }
        true
    }
}
