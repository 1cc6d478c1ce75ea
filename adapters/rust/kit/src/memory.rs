//! Guest memory as a VMM builds it: one host mapping per guest-physical region.

use std::io;
use std::ptr;

/// One guest-physical region and the host mapping behind it.
#[derive(Debug)]
pub struct Region {
    gpa: u64,
    size: u64,
    host: *mut u8,
    /// Bytes mapped: `size` rounded up to pages, plus one guard page.
    map_len: usize,
}

impl Region {
    /// Guest-physical address of the region's first byte.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }
    /// Size in bytes, exactly as the case asked (not rounded to pages).
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Host address of the region's first byte (page-aligned).
    pub fn host(&self) -> *mut u8 {
        self.host
    }
    fn host_addr(&self) -> usize {
        self.host as usize
    }
}

/// Why a case's memory could not be built: the adapter's limit, answered as `Unsupported`.
#[derive(Debug)]
pub struct Unsupported(pub String);

fn page_size() -> usize {
    // SAFETY: sysconf has no side effects.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// The guest memory of one case. Regions are sorted by guest address and never overlap.
#[derive(Debug, Default)]
pub struct GuestMemory {
    regions: Vec<Region>,
    /// Indices into `regions` sorted by host address, for translating host pointers back.
    by_host: Vec<usize>,
}

impl GuestMemory {
    /// The regions, sorted by guest-physical address.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The region holding guest address `gpa`.
    pub fn region(&self, gpa: u64) -> Option<&Region> {
        let i = self.regions.partition_point(|r| r.gpa <= gpa);
        let r = self.regions.get(i.checked_sub(1)?)?;
        (gpa - r.gpa < r.size).then_some(r)
    }

    /// Host pointer to `[gpa, gpa + len)` when one region holds all of it. A range that
    /// crosses into the next region has no host pointer: the regions are separate mappings.
    pub fn host_ptr(&self, gpa: u64, len: u64) -> Option<*mut u8> {
        let r = self.region(gpa)?;
        let off = gpa - r.gpa;
        (len <= r.size - off).then(|| r.host.wrapping_add(off as usize))
    }

    /// Copy guest memory at `gpa` into `buf`, across adjacent regions as a VMM's
    /// `read` does; `None` if any byte is not guest memory.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Option<()> {
        // SAFETY: each piece lies inside its region's live mapping (`pieces`).
        self.pieces(gpa, buf.len(), |host, done, n| unsafe {
            ptr::copy_nonoverlapping(host, buf[done..].as_mut_ptr(), n)
        })
    }

    /// The `n` little-endian bytes at `gpa` as a number (a ring index, a descriptor field),
    /// read across adjacent regions; `None` if any byte is not guest memory.
    ///
    /// Panics if `n` is over 8.
    pub fn read_le(&self, gpa: u64, n: usize) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b[..n])?;
        Some(u64::from_le_bytes(b))
    }

    /// Whether every byte of `[gpa, gpa + len)` is guest memory. Adjacent regions count as
    /// one range (a ring may lie across two, as a VMM's memory reads it); an empty range
    /// always is.
    pub fn contains(&self, mut gpa: u64, mut len: u64) -> bool {
        while len > 0 {
            let Some(r) = self.region(gpa) else { return false };
            let room = r.size - (gpa - r.gpa);
            if room >= len {
                return true;
            }
            let Some(next) = gpa.checked_add(room) else { return false };
            (gpa, len) = (next, len - room);
        }
        true
    }

    /// Copy `data` into guest memory at `gpa`; `None` if any byte is not guest memory.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Option<()> {
        // SAFETY: as in `read`.
        self.pieces(gpa, data.len(), |host, done, n| unsafe {
            ptr::copy_nonoverlapping(data[done..].as_ptr(), host, n)
        })
    }

    /// `[gpa, gpa + len)` cut at region ends: `f(host pointer, bytes before it, piece length)`
    /// for each piece in order; `None` at the first byte that is not guest memory.
    fn pieces(&self, gpa: u64, len: usize, mut f: impl FnMut(*mut u8, usize, usize)) -> Option<()> {
        let mut done = 0usize;
        while done < len {
            let at = gpa.checked_add(done as u64)?;
            let r = self.region(at)?;
            let off = at - r.gpa;
            let n = ((r.size - off) as u128).min((len - done) as u128) as usize;
            // SAFETY: off < r.size, so the pointer stays inside the region's mapping.
            f(unsafe { r.host.add(off as usize) }, done, n);
            done += n;
        }
        Some(())
    }

    /// The guest range `(gpa, len)` a host slice stands for. Never clips: the region is
    /// the one holding the slice's *first* byte, and the length is reported whole even
    /// when the slice runs past that region's end, so the harness sees an out-of-region
    /// slice for what it is (Firecracker CVE-2019-18960 read past a region's end; a
    /// clipped answer would look correct).
    ///
    /// A pointer in no region is reported relative to the region whose mapping is nearest
    /// in host address space (signed offset, modulo 2^64): a pointer k bytes past region
    /// R's end becomes `R.gpa + R.size + k`, one k bytes before it `R.gpa - k`. That is
    /// outside R, so the harness flags it (outside the region, the chain or memory) unless
    /// another region is adjacent to R in guest space at exactly that place.
    pub fn guest_range(&self, ptr: *const u8, len: usize) -> (u64, u64) {
        let p = ptr as usize;
        let i = self.by_host.partition_point(|&k| self.regions[k].host_addr() <= p);
        let before = i.checked_sub(1).map(|j| &self.regions[self.by_host[j]]);
        let after = self.by_host.get(i).map(|&k| &self.regions[k]);
        let base = match (before, after) {
            (Some(r), _) if ((p - r.host_addr()) as u64) < r.size => r,
            (Some(b), Some(a)) => {
                let past_b = p - (b.host_addr() + b.size as usize);
                if a.host_addr() - p < past_b {
                    a
                } else {
                    b
                }
            }
            (Some(b), None) => b,
            (None, Some(a)) => a,
            (None, None) => return (p as u64, len as u64), // no memory at all: the raw pointer
        };
        let off = (p as u64).wrapping_sub(base.host_addr() as u64);
        (base.gpa.wrapping_add(off), len as u64)
    }

    /// Build the memory for `regions` (each `(gpa, size)`, sorted, non-overlapping, non-empty),
    /// zero-filled, reusing the previous case's mappings where the sizes match.
    pub(crate) fn set_up(&mut self, regions: &[(u64, u64)]) -> Result<(), Unsupported> {
        let page = page_size();
        let mut old: Vec<Region> = std::mem::take(&mut self.regions);
        self.by_host.clear();
        let mut fail = None;
        for &(gpa, size) in regions {
            if fail.is_some() {
                break;
            }
            let map_len = (size as u128).div_ceil(page as u128) * page as u128 + page as u128;
            // mmap takes a usize and the kernel refuses more than isize::MAX bytes.
            if map_len > isize::MAX as u128 {
                fail = Some(format!("region at {gpa:#x} of {size} bytes is larger than a mapping can be"));
                break;
            }
            let map_len = map_len as usize;
            if let Some(k) = old.iter().position(|r| r.map_len == map_len) {
                let mut r = old.swap_remove(k);
                // Private anonymous pages read as zero again after MADV_DONTNEED: no state
                // from the previous case (writes, or what the device wrote) leaks into this one.
                // SAFETY: the range is our own live mapping.
                if unsafe { libc::madvise(r.host.cast(), map_len - page, libc::MADV_DONTNEED) } == 0 {
                    r.gpa = gpa;
                    r.size = size;
                    self.regions.push(r);
                    continue;
                }
                unmap(&r);
            }
            match map(map_len, page) {
                Ok(host) => self.regions.push(Region { gpa, size, host, map_len }),
                Err(e) => fail = Some(format!("region at {gpa:#x} of {size} bytes cannot be mapped: {e}")),
            }
        }
        for r in &old {
            unmap(r);
        }
        if let Some(why) = fail {
            self.clear();
            return Err(Unsupported(why));
        }
        self.by_host = (0..self.regions.len()).collect();
        self.by_host.sort_by_key(|&k| self.regions[k].host_addr());
        Ok(())
    }

    fn clear(&mut self) {
        for r in self.regions.drain(..) {
            unmap(&r);
        }
        self.by_host.clear();
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Reserve `map_len` bytes without committing memory; the last page is a guard.
///
/// MAP_NORESERVE: regions go up to 2^64 bytes and a case may ask for several of 2^40;
/// allocating (or committing swap for) what was asked would exhaust the machine and be
/// reported as a crash or hang of the device. Only the pages written are ever backed.
/// The guard page makes a device that reads past a region's mapping fault instead of
/// reading whatever mapping the kernel happened to place next to it.
fn map(map_len: usize, page: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            map_len,
            crate::MMAP_PROT,
            crate::MMAP_FLAGS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the last page of the mapping just made.
    if unsafe { libc::mprotect(p.cast::<u8>().add(map_len - page).cast(), page, libc::PROT_NONE) } != 0 {
        let e = io::Error::last_os_error();
        // SAFETY: our own mapping.
        unsafe { libc::munmap(p, map_len) };
        return Err(e);
    }
    Ok(p.cast())
}

fn unmap(r: &Region) {
    // SAFETY: the region owns its mapping; nothing refers to it after this.
    unsafe { libc::munmap(r.host.cast(), r.map_len) };
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIB: u64 = 1 << 40;

    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn huge_regions_are_reserved_not_committed() {
        let before = rss_kib();
        let mut m = GuestMemory::default();
        m.set_up(&[(0, TIB), (2 * TIB, TIB)]).unwrap();
        m.write(TIB - 4, b"end!").unwrap();
        m.write(2 * TIB + TIB / 2, b"mid").unwrap();
        let mut b = [0u8; 4];
        m.read(TIB - 4, &mut b).unwrap();
        assert_eq!(&b, b"end!");
        // two pages touched out of 2 TiB
        assert!(rss_kib() < before + 16 * 1024, "RSS grew by {} KiB", rss_kib() - before);
        // the same shapes again: mappings reused, contents zero
        m.set_up(&[(0, TIB), (2 * TIB, TIB)]).unwrap();
        m.read(TIB - 4, &mut b).unwrap();
        assert_eq!(b, [0; 4]);
    }

    #[test]
    fn unmappable_regions_are_unsupported() {
        let mut m = GuestMemory::default();
        assert!(m.set_up(&[(0, u64::MAX)]).is_err());
        assert!(m.set_up(&[(0, 1 << 62)]).is_err());
        assert!(m.regions().is_empty());
    }

    #[test]
    fn adjacent_regions_are_separate_mappings() {
        let mut m = GuestMemory::default();
        m.set_up(&[(0x1000, 0x1000), (0x2000, 0x1000)]).unwrap();
        let (a, b) = (&m.regions()[0], &m.regions()[1]);
        assert_ne!(a.host().wrapping_add(0x1000), b.host(), "adjacent in guest space, not on the host");
        // a guest range crossing the boundary has no single host pointer...
        assert_eq!(m.host_ptr(0x1ffc, 8), None);
        assert!(m.host_ptr(0x1ff8, 8).is_some());
        // ...but reads and writes cross it, as vm-memory's do
        m.write(0x1ffc, b"abcdefgh").unwrap();
        let mut b = [0u8; 8];
        m.read(0x1ffc, &mut b).unwrap();
        assert_eq!(&b, b"abcdefgh");
        assert_eq!(m.read(0x2ffc, &mut b), None);
    }

    #[test]
    fn contains_and_read_le_take_adjacent_regions_as_one() {
        let mut m = GuestMemory::default();
        m.set_up(&[(0x1000, 0x1000), (0x2000, 0x1000), (u64::MAX - 5, 6)]).unwrap();
        assert!(m.contains(0x1ff0, 0x1010));
        assert!(!m.contains(0x1ff0, 0x1011));
        assert!(!m.contains(0xfff, 2));
        assert!(m.contains(u64::MAX - 5, 6));
        assert!(!m.contains(u64::MAX - 5, 7), "no byte past 2^64");
        assert!(m.contains(0x8000, 0), "an empty range");
        m.write(0x1ffe, &[0x34, 0x12, 0x78, 0x56]).unwrap();
        assert_eq!(m.read_le(0x1ffe, 2), Some(0x1234));
        assert_eq!(m.read_le(0x1ffe, 4), Some(0x5678_1234));
        assert_eq!(m.read_le(0x1ffe, 8), Some(0x5678_1234));
        assert_eq!(m.read_le(0x2ffc, 8), None);
    }

    #[test]
    fn translation_at_region_ends_never_clips() {
        let mut m = GuestMemory::default();
        m.set_up(&[(0x10000, 0x100), (0x10100, 0x100), (0x900000, 0x3000)]).unwrap();
        let r0 = m.regions()[0].host();
        // first and last byte
        assert_eq!(m.guest_range(r0, 1), (0x10000, 1));
        assert_eq!(m.guest_range(r0.wrapping_add(0xff), 1), (0x100ff, 1));
        // a slice straddling the end is reported whole, starting in its region
        assert_eq!(m.guest_range(r0.wrapping_add(0xf0), 0x20), (0x100f0, 0x20));
        // one past the end: in no region, reported relative to the region before it
        // (it lands on the adjacent region's first gpa, which the harness flags as
        // outside the chain's buffer; see guest_range)
        assert_eq!(m.guest_range(r0.wrapping_add(0x100), 4), (0x10100, 4));
        let r2 = m.regions()[2].host();
        assert_eq!(m.guest_range(r2.wrapping_add(0x3000), 1), (0x903000, 1));
        assert_eq!(m.guest_range(r2.wrapping_add(0x2fff), 0x10), (0x902fff, 0x10));
        // a slice of a huge length is reported as asked
        assert_eq!(m.guest_range(r2, usize::MAX), (0x900000, usize::MAX as u64));
        // the host pointer the kit hands out translates back
        let p = m.host_ptr(0x10150, 0x10).unwrap();
        assert_eq!(m.guest_range(p, 0x10), (0x10150, 0x10));
    }

    #[test]
    fn pointer_before_the_lowest_mapping() {
        let mut m = GuestMemory::default();
        m.set_up(&[(0x4000, 0x1000)]).unwrap();
        let r = m.regions()[0].host();
        assert_eq!(m.guest_range(r.wrapping_sub(0x10), 0x10), (0x3ff0, 0x10));
        m.set_up(&[(0, 0x1000)]).unwrap();
        let r = m.regions()[0].host();
        assert_eq!(m.guest_range(r.wrapping_sub(1), 1), (u64::MAX, 1));
    }
}
