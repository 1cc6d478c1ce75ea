//! vsock-fuzz's compiled per-case path (`vsock_fuzz/model/compiled.py` loads it; the package runs
//! without it, on the Python reference, slower).
//!
//! A fuzz case's usual life: bytes -> case (`decode`), fitted to the device (`fit`), sent to
//! the target (`raw` for frames-v1, `line` for protocol v1), its answer frame decoded
//! (`answer_frame`) and compared with the spec model's readings (`agrees`). Only an answer that
//! differs leaves the core: `case()` then builds the Python case the oracles judge, with the
//! facts of the usual refusal (`refusal`) when it is one. The Python modules named in each file
//! are the reference; `tests/test_core.py` holds the core to them.

mod coverage;
mod model;
mod refusal;

use std::sync::OnceLock;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use vsock_fuzz_case as case;
use case::{Case, Header};
use model::{Answer, Offer};

/// The Python classes the core builds: Case, Region, Write, Ring, Answer, Header (`bind`).
static CLASSES: OnceLock<[Py<PyAny>; 6]> = OnceLock::new();

fn classes() -> PyResult<&'static [Py<PyAny>; 6]> {
    CLASSES.get().ok_or_else(|| PyValueError::new_err("vsock_fuzz_core.bind() was not called"))
}

#[pyclass(frozen, module = "vsock_fuzz_core")]
struct CoreCase {
    case: Case,
}

#[pymethods]
impl CoreCase {
    /// "tx" or "rx".
    #[getter]
    fn queue(&self) -> &'static str {
        if self.case.rx {
            "rx"
        } else {
            "tx"
        }
    }

    /// `Device.fit`: the case as the harness sends it to a device with these limits.
    #[pyo3(signature = (max_data_size=None, max_region_size=None, max_regions=None))]
    fn fit(&self, max_data_size: Option<u128>, max_region_size: Option<u128>, max_regions: Option<usize>) -> CoreCase {
        CoreCase { case: case::fit(&self.case, max_data_size, max_region_size, max_regions) }
    }

    /// `binary.encode`: the raw binary form (a frames-v1 request's body).
    fn raw<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &case::encode(&self.case))
    }

    /// The protocol v1 parse request with id `id`, as one line.
    fn line<'py>(&self, py: Python<'py>, id: u64) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &request_line(&self.case, id))
    }

    /// The Python `Case` (vsock_fuzz.case.value) this is.
    fn case<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let [case_cls, region_cls, write_cls, ring_cls, _, _] = classes()?;
        let c = &self.case;
        let regions = PyTuple::new(py, c.regions.iter().map(|r| region_cls.call1(py, (r.gpa, r.size))).collect::<PyResult<Vec<_>>>()?)?;
        let writes = PyTuple::new(
            py,
            c.writes.iter().map(|w| write_cls.call1(py, (w.gpa, PyBytes::new(py, &w.data)))).collect::<PyResult<Vec<_>>>()?,
        )?;
        let r = &c.ring;
        let ring = ring_cls.call1(py, (r.size, r.desc_table, r.avail, r.used, r.head))?;
        case_cls.bind(py).call1((self.queue(), c.max_data_size, regions, writes, ring))
    }

    /// Whether `answer` (a vsock_fuzz Answer) is one the spec model's readings give for a
    /// device with this offer (`oracles.run.agrees` over `packet.readings`).
    fn agrees(&self, answer: &Bound<'_, PyAny>, described: bool, indirect: bool, seqpacket: bool, max_queue_size: u128) -> bool {
        let Some(theirs) = extract_answer(answer) else { return false };
        let offer = Offer { described, indirect, seqpacket, max_queue_size };
        coverage::counting(|| model::readings(&self.case, &offer).iter().any(|mine| agrees(&theirs, mine)))
    }

    /// The spec model's readings, as (ok, error, class, header, header_slices, data_slices)
    /// tuples, the model's own first (the reference target's answer; tests).
    fn readings(&self, described: bool, indirect: bool, seqpacket: bool, max_queue_size: u128) -> Vec<PyAnswer> {
        let offer = Offer { described, indirect, seqpacket, max_queue_size };
        coverage::counting(|| model::readings(&self.case, &offer)).into_iter().map(to_tuple).collect()
    }

    /// When a device with this offer refuses this case, and what the oracles say of that follows
    /// from the core's facts (`refusal`): the model's answer (as `readings` gives it), the
    /// chain's layout traits and whether it goes through an indirect table. None: the Python
    /// oracles judge the refusal.
    fn refusal(&self, described: bool, indirect: bool, seqpacket: bool, max_queue_size: u128) -> Option<(PyAnswer, Vec<String>, bool)> {
        let offer = Offer { described, indirect, seqpacket, max_queue_size };
        coverage::counting(|| refusal::refusal(&self.case, &offer)).map(|r| (to_tuple(r.model), r.traits, r.indirect))
    }
}

type PyAnswer = (bool, Option<&'static str>, Option<&'static str>, Option<Header>, Vec<(u128, u128)>, Vec<(u128, u128)>);

fn to_tuple(a: Answer) -> PyAnswer {
    match a {
        Answer::Accepted { header, header_slices, data_slices } => (true, None, None, header, header_slices, data_slices),
        Answer::Rejected { error, class } => (false, Some(error), Some(class), None, vec![], vec![]),
    }
}

/// A target's answer as the comparison reads it; None when it cannot agree with any reading
/// (a crash, a hang, Unsupported, or values no model answer holds).
struct Theirs {
    ok: bool,
    header: Option<Header>,
    header_slices: Vec<(u128, u128)>,
    data_slices: Vec<(u128, u128)>,
}

fn extract_answer(a: &Bound<'_, PyAny>) -> Option<Theirs> {
    let ok: bool = a.getattr("ok").ok()?.extract().ok()?;
    if !ok {
        let class: Option<String> = a.getattr("error_class").ok()?.extract().ok()?;
        let error: Option<String> = a.getattr("error").ok()?.extract().ok()?;
        let fault = matches!(class.as_deref(), Some("crash" | "hang"));
        return (!fault && error.as_deref() != Some("Unsupported")).then_some(Theirs {
            ok,
            header: None,
            header_slices: vec![],
            data_slices: vec![],
        });
    }
    let header = a.getattr("header").ok()?;
    let header = if header.is_none() { None } else { Some(header.extract::<Header>().ok()?) };
    Some(Theirs {
        ok,
        header,
        header_slices: a.getattr("header_slices").ok()?.extract().ok()?,
        data_slices: a.getattr("data_slices").ok()?.extract().ok()?,
    })
}

/// `oracles.run.agrees`: the same verdict and, when accepted, the same slices and tx header.
fn agrees(theirs: &Theirs, mine: &Answer) -> bool {
    match mine {
        Answer::Rejected { .. } => !theirs.ok,
        Answer::Accepted { header, header_slices, data_slices } => {
            theirs.ok
                && theirs.header_slices == *header_slices
                && theirs.data_slices == *data_slices
                && (header.is_none() || theirs.header == *header)
        }
    }
}

/// `Case.to_request` as compact JSON (keys in the same order), and a newline.
fn request_line(c: &Case, id: u64) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(256 + 2 * c.writes.iter().map(|w| w.data.len()).sum::<usize>());
    let r = &c.ring;
    let _ = write!(s, "{{\"id\":{id},\"op\":\"parse\",\"queue\":\"{}\",\"max_data_size\":{},\"memory\":[", if c.rx { "rx" } else { "tx" }, c.max_data_size);
    for (i, reg) in c.regions.iter().enumerate() {
        let _ = write!(s, "{}{{\"gpa\":{},\"size\":{}}}", if i > 0 { "," } else { "" }, reg.gpa, reg.size);
    }
    s.push_str("],\"writes\":[");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, w) in c.writes.iter().enumerate() {
        let _ = write!(s, "{}{{\"gpa\":{},\"hex\":\"", if i > 0 { "," } else { "" }, w.gpa);
        for &b in &w.data {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s.push_str("\"}");
    }
    let _ = writeln!(
        s,
        "],\"ring\":{{\"size\":{},\"desc_table\":{},\"avail\":{},\"used\":{},\"head\":{}}}}}",
        r.size, r.desc_table, r.avail, r.used, r.head
    );
    s.into_bytes()
}

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Read what the non-blocking `fd` holds, up to `size` bytes, polling for up to `spin` seconds
/// with the GIL released (`targets.transport.Pipes`: a native target answers in microseconds,
/// sooner than a sleep and a wake-up). None when nothing came; empty bytes at end of file.
#[pyfunction]
fn read_spin<'py>(py: Python<'py>, fd: i32, spin: f64, size: usize) -> PyResult<Option<Bound<'py, PyBytes>>> {
    use std::io::{ErrorKind, Read};
    use std::os::fd::FromRawFd;
    let got = py.detach(|| {
        // SAFETY: the caller's open descriptor, borrowed: ManuallyDrop never closes it
        let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
        let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(spin.max(0.0));
        READ_BUF.with_borrow_mut(|buf| {
            buf.resize(size, 0);
            loop {
                match (&*file).read(buf) {
                    Ok(n) => return Ok(Some(buf[..n].to_vec())),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if std::time::Instant::now() >= end {
                            return Ok(None);
                        }
                        std::hint::spin_loop();
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    })?;
    Ok(got.map(|b| PyBytes::new(py, &b)))
}

/// `binary.decode`: every byte string is a case.
#[pyfunction]
fn decode(data: &[u8]) -> CoreCase {
    CoreCase { case: case::decode(data) }
}

/// The core's SanitizerCoverage counters as (address, length), None in a build without them.
#[pyfunction]
fn counters() -> Option<(usize, usize)> {
    coverage::counters()
}

/// Give the core the Python classes it builds (once, at import).
#[pyfunction]
fn bind(case: Py<PyAny>, region: Py<PyAny>, write: Py<PyAny>, ring: Py<PyAny>, answer: Py<PyAny>, header: Py<PyAny>) {
    let _ = CLASSES.set([case, region, write, ring, answer, header]);
}

/// A frames-v1 answer frame (without its length prefix) that accepts a packet, as (id, Answer):
/// `targets.frames.decode_answer`'s usual case. None for anything else (a rejection, a
/// malformed frame), which the Python codec decodes and names.
#[pyfunction]
fn answer_frame<'py>(py: Python<'py>, frame: &[u8]) -> PyResult<Option<(u32, Bound<'py, PyAny>)>> {
    let [_, _, _, _, answer_cls, header_cls] = classes()?;
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |v, &x| v << 8 | x as u64);
    let (Some(head), Some(&1)) = (frame.get(..4), frame.get(4)) else { return Ok(None) };
    let mut pos = 6;
    let header = match frame.get(5) {
        Some(0) => py.None().into_bound(py),
        Some(_) => {
            let Some(raw) = frame.get(pos..pos + 44) else { return Ok(None) };
            pos += 44;
            header_cls.bind(py).call1(PyTuple::new(py, case::unpack_header(raw).map(|v| v as u64))?)?
        }
        None => return Ok(None),
    };
    let mut lists = Vec::with_capacity(2);
    for _ in 0..2 {
        let Some(n) = frame.get(pos..pos + 4).map(|b| le(b) as usize) else { return Ok(None) };
        pos += 4;
        let Some(body) = frame.get(pos..pos.saturating_add(n.saturating_mul(16))) else { return Ok(None) };
        pos += 16 * n;
        lists.push(PyTuple::new(py, body.chunks(16).map(|s| (le(&s[..8]), le(&s[8..]))))?);
    }
    if pos != frame.len() {
        return Ok(None);
    }
    let answer = answer_cls.bind(py).call1((true, header, &lists[0], &lists[1]))?;
    Ok(Some((le(head) as u32, answer)))
}

#[pymodule]
fn vsock_fuzz_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CoreCase>()?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(bind, m)?)?;
    m.add_function(wrap_pyfunction!(counters, m)?)?;
    m.add_function(wrap_pyfunction!(answer_frame, m)?)?;
    m.add_function(wrap_pyfunction!(read_spin, m)?)?;
    Ok(())
}
