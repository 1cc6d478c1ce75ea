//! The coverage channel `shm-8bit-v1` (`docs/protocol-extensions.md`, "Coverage"): the
//! device's own edges guide the harness's libFuzzer.
//!
//! Build the target with rustc's SanitizerCoverage inline 8-bit counters (stable rustc;
//! a separate target directory keeps the plain build):
//!
//! ```text
//! RUSTFLAGS="-C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 \
//!            -C llvm-args=-sanitizer-coverage-inline-8bit-counters" \
//!   cargo build --release --target-dir target/cov
//! ```
//!
//! LLVM then gives the counters of every instrumented crate to
//! [`__sanitizer_cov_8bit_counters_init`] before `main`. The kit zeroes them just before
//! each call into the device and adds them into the harness's region just after it, so
//! only edges run by the device count: not the kit's own request decoding, whose branches
//! follow JSON number widths rather than anything the device does. Without those flags
//! nothing registers counters and the kit never takes the channel.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The channel's name in hello.
pub const CHANNEL: &str = "shm-8bit-v1";

const MAX_RANGES: usize = 64;
static STARTS: [AtomicPtr<u8>; MAX_RANGES] = [const { AtomicPtr::new(null_mut()) }; MAX_RANGES];
static STOPS: [AtomicPtr<u8>; MAX_RANGES] = [const { AtomicPtr::new(null_mut()) }; MAX_RANGES];
static RANGES: AtomicUsize = AtomicUsize::new(0);

/// Called by the code SanitizerCoverage adds, once per module (on ELF every module passes
/// the whole linked counter section, so repeats are dropped).
///
/// # Safety
/// `[start, stop)` must be counters that live as long as the process.
#[no_mangle]
pub unsafe extern "C" fn __sanitizer_cov_8bit_counters_init(start: *mut u8, stop: *mut u8) {
    let n = RANGES.load(Ordering::Acquire);
    if start >= stop || n == MAX_RANGES || STARTS[..n].iter().any(|s| s.load(Ordering::Relaxed) == start) {
        return;
    }
    STARTS[n].store(start, Ordering::Relaxed);
    STOPS[n].store(stop, Ordering::Relaxed);
    RANGES.store(n + 1, Ordering::Release);
}

/// The registered counter ranges.
fn ranges() -> impl Iterator<Item = &'static mut [u8]> {
    (0..RANGES.load(Ordering::Acquire)).map(|i| {
        let (s, e) = (STARTS[i].load(Ordering::Relaxed), STOPS[i].load(Ordering::Relaxed));
        // SAFETY: registered by __sanitizer_cov_8bit_counters_init (static counters, start < stop)
        unsafe { std::slice::from_raw_parts_mut(s, e as usize - s as usize) }
    })
}

/// Counters registered by instrumented code (0 in a plain build).
pub fn counters() -> usize {
    ranges().map(|r| r.len()).sum()
}

/// The harness's counter region, mapped.
pub struct Channel {
    map: *mut u8,
    mask: usize,
}

impl Channel {
    /// Map the region the harness passed (`VSOCK_FUZZ_COV_FD`, `VSOCK_FUZZ_COV_SIZE`);
    /// `None` when there is none, it cannot be mapped, or nothing here is instrumented.
    pub fn open() -> Option<Channel> {
        let fd: i32 = std::env::var("VSOCK_FUZZ_COV_FD").ok()?.parse().ok()?;
        let size: usize = std::env::var("VSOCK_FUZZ_COV_SIZE").ok()?.parse().ok()?;
        Channel::map(fd, size)
    }

    /// Map `size` bytes of `fd` (a power of two, at most 1 GiB) as the region.
    pub fn map(fd: i32, size: usize) -> Option<Channel> {
        if fd < 0 || !size.is_power_of_two() || size > 1 << 30 || counters() == 0 {
            return None;
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh shared mapping of the harness's memfd; nothing else aliases it here
        let p = unsafe { libc::mmap(null_mut(), size, prot, libc::MAP_SHARED, fd, 0) };
        (p != libc::MAP_FAILED).then(|| Channel { map: p.cast(), mask: size - 1 })
    }

    /// Just before the device runs: what ran since the last call (the kit) is not counted.
    /// Dropping the guard (on return, or when a panic unwinds past it) calls [`Channel::end`].
    pub fn begin(&self) -> Counting<'_> {
        for r in ranges() {
            r.fill(0);
        }
        Counting(self)
    }

    /// Just after: add the device's counts into the region, counter `i` (numbered across
    /// the ranges) into `i & (size - 1)`, saturating at 255.
    pub fn end(&self) {
        let mut base = 0;
        for r in ranges() {
            for (k, chunk) in r.chunks(8).enumerate() {
                if chunk.iter().all(|&c| c == 0) {
                    continue; // most counters stay zero: skip them eight at a time
                }
                for (j, &c) in chunk.iter().enumerate().filter(|(_, &c)| c != 0) {
                    // SAFETY: the index is masked into the mapping
                    unsafe {
                        let slot = self.map.add((base + 8 * k + j) & self.mask);
                        *slot = (*slot).saturating_add(c);
                    }
                }
            }
            base += r.len();
        }
    }
}

/// The device is running; see [`Channel::begin`].
pub struct Counting<'a>(&'a Channel);

impl Drop for Counting<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}
