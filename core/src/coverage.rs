//! The core's own edges, for the fuzz worker's libFuzzer.
//!
//! The model's Python code guided coverage-guided mutation through atheris's instrumentation;
//! its compiled twin must too, or a campaign against a device with no coverage of its own
//! runs blind. The core is built with SanitizerCoverage's inline 8-bit counters
//! (pyproject.toml, `rustc-args`: this crate only, not PyO3 nor the case crate), and LLVM
//! hands the counters to the function below when the module loads.
//!
//! Only the model's readings and the comparison count ([`counting`]): as in the adapter
//! kit's coverage channel, the counters are zeroed just before and added into a buffer of
//! their own just after, and that buffer is what `counters()` gives libFuzzer
//! (vsock_fuzz.targets.coverage.register_core). The rest of this crate (argument
//! conversion, a case's drop, whose loops follow how many writes it has) would otherwise
//! make every input look new, those that crash the target included.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

static START: AtomicPtr<u8> = AtomicPtr::new(null_mut());
static STOP: AtomicPtr<u8> = AtomicPtr::new(null_mut());

/// Called by the code SanitizerCoverage adds, once for this module.
///
/// # Safety
/// `[start, stop)` must be counters that live as long as the process.
#[no_mangle]
pub unsafe extern "C" fn __sanitizer_cov_8bit_counters_init(start: *mut u8, stop: *mut u8) {
    if START.load(Ordering::Acquire).is_null() && start < stop {
        STOP.store(stop, Ordering::Relaxed);
        START.store(start, Ordering::Release);
    }
}

fn live() -> Option<&'static mut [u8]> {
    let start = START.load(Ordering::Acquire);
    // SAFETY: registered by __sanitizer_cov_8bit_counters_init (static counters, start < stop)
    (!start.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(start, STOP.load(Ordering::Relaxed) as usize - start as usize) })
}

/// The buffer libFuzzer reads: what ran inside [`counting`] since libFuzzer last cleared it.
struct Visible(*mut u8, usize);
// SAFETY: written only with the GIL held (every caller is a Python call), read by libFuzzer between inputs
unsafe impl Send for Visible {}
unsafe impl Sync for Visible {}
static VISIBLE: OnceLock<Option<Visible>> = OnceLock::new();

fn visible() -> Option<&'static Visible> {
    VISIBLE
        .get_or_init(|| live().map(|c| Visible(Box::leak(vec![0u8; c.len()].into_boxed_slice()).as_mut_ptr(), c.len())))
        .as_ref()
}

/// Run `f`, counting its edges in the buffer libFuzzer reads.
pub fn counting<T>(f: impl FnOnce() -> T) -> T {
    let (Some(counters), Some(seen)) = (live(), visible()) else { return f() };
    counters.fill(0);
    let out = f();
    // SAFETY: the visible buffer is seen.1 bytes long, as many as the counters
    let seen = unsafe { std::slice::from_raw_parts_mut(seen.0, seen.1) };
    // One straight loop: the compiler makes it a few vector instructions per 16 or 32 counters
    // (skipping zero runs by hand cost more than the model's run).
    for (v, c) in seen.iter_mut().zip(counters.iter()) {
        *v = v.saturating_add(*c);
    }
    out
}

/// The counters libFuzzer reads as (address, length), None in a build without them.
pub fn counters() -> Option<(usize, usize)> {
    visible().map(|v| (v.0 as usize, v.1))
}
