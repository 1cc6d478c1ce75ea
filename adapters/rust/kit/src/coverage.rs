//! The coverage channel `shm-8bit-v1` and `shm-8bit-v2` (`docs/protocol-extensions.md`,
//! "Coverage"): the device's own edges, and the operands of its comparisons, guide the
//! harness's libFuzzer.
//!
//! Build the target with rustc's SanitizerCoverage inline 8-bit counters and compare
//! tracing (stable rustc; a separate target directory keeps the plain build):
//!
//! ```text
//! RUSTFLAGS="-C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 \
//!            -C llvm-args=-sanitizer-coverage-inline-8bit-counters \
//!            -C llvm-args=-sanitizer-coverage-trace-compares" \
//!   cargo build --release --target-dir target/cov
//! ```
//!
//! LLVM then gives the counters of every instrumented crate to
//! [`__sanitizer_cov_8bit_counters_init`] before `main`. The kit zeroes them just before
//! each call into the device and adds them into the harness's region just after it, so
//! only edges run by the device count: not the kit's own request decoding, whose branches
//! follow JSON number widths rather than anything the device does. Without those flags
//! nothing registers counters and the kit never takes the channel.
//!
//! With compare tracing, every integer comparison calls one of the hooks below
//! (`__sanitizer_cov_trace_cmp*`, `__sanitizer_cov_trace_switch`, as cargo-fuzz's
//! libFuzzer defines them). While the device runs, and only then, they record the operands
//! into the compare table the harness passes after the counters (shm-8bit-v2), the most
//! recent ones kept; the harness writes the device's magic values and bounds into its
//! inputs from them. Built without it, nothing calls the hooks and the table stays empty.
//! SanitizerCoverage does not instrument functions named `__sanitizer_*`, so the hooks'
//! own comparisons (all inlined into them) do not call them again.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// The channel's name in hello: edge counters.
pub const CHANNEL: &str = "shm-8bit-v1";
/// Edge counters and the compare table after them.
pub const CHANNEL_CMP: &str = "shm-8bit-v2";
/// Bytes before the table's entries: le64 count of compares recorded, le32 slots, le32 0.
pub const CMP_HEADER: usize = 16;
/// Bytes of an entry: u8 size, u8 kind, 6 zero bytes, le64 arg1, le64 arg2.
pub const CMP_ENTRY: usize = 24;
/// Entry kinds: two variables, a constant (arg1) and a variable, a switch (arg2 a case value).
pub const CMP_VARIABLE: u8 = 0;
pub const CMP_CONST: u8 = 1;
pub const CMP_SWITCH: u8 = 2;
const MAX_SLOTS: usize = 1 << 20;

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

/// The harness's counter region, mapped, and its compare table when there is one.
pub struct Channel {
    map: *mut u8,
    mask: usize,
    table: *mut u8,
    slots: usize,
}

impl Channel {
    /// Map the region the harness passed (`VSOCK_FUZZ_COV_FD`, `VSOCK_FUZZ_COV_SIZE`, and
    /// `VSOCK_FUZZ_COV_CMP_SLOTS` for the compare table) for the channel hello `offered`:
    /// shm-8bit-v2 when offered with a table and this build traces compares, else
    /// shm-8bit-v1 when offered; `None` when
    /// neither, when there is no region or it cannot be mapped, or nothing here is
    /// instrumented (no counters registered).
    pub fn open(offered: &[String]) -> Option<Channel> {
        if counters() == 0 {
            return None;
        }
        let offers = |name: &str| offered.iter().any(|c| c == name);
        let fd: i32 = std::env::var("VSOCK_FUZZ_COV_FD").ok()?.parse().ok()?;
        let size: usize = std::env::var("VSOCK_FUZZ_COV_SIZE").ok()?.parse().ok()?;
        let slots = std::env::var("VSOCK_FUZZ_COV_CMP_SLOTS").ok().and_then(|s| s.parse().ok());
        match slots {
            // A hook has run (decoding the hello line compared something): built with
            // trace-compares. Without, shm-8bit-v1, as before.
            Some(slots) if offers(CHANNEL_CMP) && TRACED.load(Ordering::Relaxed) => Channel::map_with_table(fd, size, slots),
            _ if offers(CHANNEL) => Channel::map(fd, size),
            _ => None,
        }
    }

    /// Map `size` bytes of `fd` (a power of two, at most 1 GiB) as the region.
    pub fn map(fd: i32, size: usize) -> Option<Channel> {
        Channel::map_with_table(fd, size, 0)
    }

    /// Map `size` bytes of counters and, with `slots` (at most 2^20), the compare table of
    /// that many entries after them. The slot count is the environment's, never the table
    /// header's, which an earlier process of this target may have overwritten; a file too
    /// short for the table (which would fault on the first compare) is refused.
    pub fn map_with_table(fd: i32, size: usize, slots: usize) -> Option<Channel> {
        if fd < 0 || !size.is_power_of_two() || size > 1 << 30 || slots > MAX_SLOTS {
            return None;
        }
        let whole = size + if slots > 0 { CMP_HEADER + CMP_ENTRY * slots } else { 0 };
        // SAFETY: fstat into a zeroed stat of our own
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if slots > 0 && (unsafe { libc::fstat(fd, &mut st) } != 0 || (st.st_size as usize) < whole) {
            return None;
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh shared mapping of the harness's memfd; nothing else aliases it here
        let p = unsafe { libc::mmap(null_mut(), whole, prot, libc::MAP_SHARED, fd, 0) };
        if p == libc::MAP_FAILED {
            return None;
        }
        let map: *mut u8 = p.cast();
        // SAFETY: the table starts inside the mapping, `size` bytes in
        let table = if slots > 0 { unsafe { map.add(size) } } else { null_mut() };
        Some(Channel { map, mask: size - 1, table, slots })
    }

    /// The channel this region serves, for hello.
    pub fn name(&self) -> &'static str {
        if self.table.is_null() {
            CHANNEL
        } else {
            CHANNEL_CMP
        }
    }

    /// Just before the device runs: what ran since the last call (the kit) is not counted,
    /// and compares are recorded from now on. Dropping the guard (on return, or when a panic
    /// unwinds past it) calls [`Channel::end`].
    pub fn begin(&self) -> Counting<'_> {
        for r in ranges() {
            r.fill(0);
        }
        self.arm();
        Counting(self)
    }

    /// Record compares (not edges) until the guard drops; [`Channel::begin`] does both.
    pub fn compares(&self) -> Comparing<'_> {
        self.arm();
        Comparing(self)
    }

    fn arm(&self) {
        if !self.table.is_null() {
            SLOTS.store(self.slots as u64, Ordering::Relaxed);
            TABLE.store(self.table, Ordering::Release);
        }
    }

    fn disarm(&self) {
        if !self.table.is_null() {
            TABLE.store(null_mut(), Ordering::Release);
        }
    }

    /// Just after: stop recording compares, and add the device's counts into the region,
    /// counter `i` (numbered across the ranges) into `i & (size - 1)`, saturating at 255.
    pub fn end(&self) {
        self.disarm();
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

/// Compares are being recorded; see [`Channel::compares`].
pub struct Comparing<'a>(&'a Channel);

impl Drop for Comparing<'_> {
    fn drop(&mut self) {
        self.0.disarm();
    }
}

/// The compare table while the device runs (null otherwise: the hooks record nothing).
static TABLE: AtomicPtr<u8> = AtomicPtr::new(null_mut());
/// A hook has run: this build traces compares.
static TRACED: AtomicBool = AtomicBool::new(false);
static SLOTS: AtomicU64 = AtomicU64::new(0);

/// Record one compare: entry number `count` goes in slot `count % slots`, the count goes up.
/// Inlined into the hooks, which SanitizerCoverage leaves uninstrumented by their name; it
/// calls nothing, since a function of ours or a generic one of std's that is not inlined
/// would be instrumented, and its comparisons would call the hooks again (a slice copy did:
/// the stack overflowed on the first case).
#[inline(always)]
fn record(size: u8, kind: u8, a: u64, b: u64) {
    TRACED.store(true, Ordering::Relaxed);
    let table = TABLE.load(Ordering::Acquire);
    let slots = SLOTS.load(Ordering::Relaxed);
    if table.is_null() || slots == 0 {
        return;
    }
    // SAFETY: `table` is a live mapping of CMP_HEADER + CMP_ENTRY * slots bytes (begin/end
    // bracket the device call) and the slot index is reduced modulo `slots`. The harness
    // reads the entries only after the answer, so nothing races with these writes.
    unsafe {
        let head = table as *mut u64;
        let count = u64::from_le(head.read_unaligned());
        // The harness's slot counts are powers of two: a mask, not a division per compare.
        let slot = if slots & (slots - 1) == 0 { count & (slots - 1) } else { count % slots };
        let e = table.add(CMP_HEADER + slot as usize * CMP_ENTRY);
        (e as *mut u64).write_unaligned((u64::from(size) | u64::from(kind) << 8).to_le());
        (e.add(8) as *mut u64).write_unaligned(a.to_le());
        (e.add(16) as *mut u64).write_unaligned(b.to_le());
        head.write_unaligned(count.wrapping_add(1).to_le());
    }
}

// 1-byte compares are not recorded: libFuzzer keeps none in its tables (plain mutation reaches
// a byte's 256 values), and they are two in five of a parser's compares, which would push the
// wider ones out of the table.
#[no_mangle]
pub extern "C" fn __sanitizer_cov_trace_cmp1(_a: u8, _b: u8) {
    TRACED.store(true, Ordering::Relaxed);
}
#[no_mangle]
pub extern "C" fn __sanitizer_cov_trace_const_cmp1(_a: u8, _b: u8) {
    TRACED.store(true, Ordering::Relaxed);
}
/// One exported hook per width and kind; the constant, when there is one, is the first operand.
macro_rules! compare_hooks {
    ($($name:ident: $ty:ty, $size:expr, $kind:expr;)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name(a: $ty, b: $ty) {
            record($size, $kind, a.into(), b.into());
        }
    )*};
}
compare_hooks! {
    __sanitizer_cov_trace_cmp2: u16, 2, CMP_VARIABLE;
    __sanitizer_cov_trace_cmp4: u32, 4, CMP_VARIABLE;
    __sanitizer_cov_trace_cmp8: u64, 8, CMP_VARIABLE;
    __sanitizer_cov_trace_const_cmp2: u16, 2, CMP_CONST;
    __sanitizer_cov_trace_const_cmp4: u32, 4, CMP_CONST;
    __sanitizer_cov_trace_const_cmp8: u64, 8, CMP_CONST;
}

/// A `match` or `switch`: `cases[0]` values of `cases[1]` bits follow. Recorded as libFuzzer
/// takes it: the value against the nearest case below it and the nearest above.
///
/// # Safety
/// `cases` must be the table SanitizerCoverage emits for the switch.
#[no_mangle]
pub unsafe extern "C" fn __sanitizer_cov_trace_switch(val: u64, cases: *const u64) {
    TRACED.store(true, Ordering::Relaxed);
    if TABLE.load(Ordering::Relaxed).is_null() {
        return;
    }
    // SAFETY: the caller's table: a count, a width, then `count` values
    let (n, bits) = unsafe { (*cases, *cases.add(1)) };
    let size = match bits {
        16 => 2,
        32 => 4,
        64 => 8,
        _ => return,
    };
    // The nearest case below and above: no Option, no closure (see record()).
    let (mut below, mut above, mut has_below, mut has_above) = (0u64, 0u64, false, false);
    let mut i = 0;
    while i < n as usize {
        // SAFETY: within the `n` values
        let c = unsafe { *cases.add(2 + i) };
        if c < val && (!has_below || c > below) {
            below = c;
            has_below = true;
        } else if c > val && (!has_above || c < above) {
            above = c;
            has_above = true;
        }
        i += 1;
    }
    if has_below {
        record(size, CMP_SWITCH, val, below);
    }
    if has_above {
        record(size, CMP_SWITCH, val, above);
    }
}
