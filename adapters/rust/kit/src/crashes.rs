//! Crash frames (docs/protocol-extensions.md): a device that panics costs a fork, not a new
//! process.
//!
//! A crash used to end the process, and the harness started another: exec, the dynamic
//! loader, the runtime and hello, about a millisecond on a small VM, twelve times a case. A
//! device that panics on a common class of input (libkrun on an unmapped available ring)
//! spent most of a campaign there. When the harness offers crash frames, the kit forks after
//! hello and a child serves the cases. On a panic the child answers the case with a crash
//! frame (the panic's report), hands its unread input back and exits; the parent forks a
//! fresh child, which is the process as it was after hello: no state survives a crash, as
//! with a restart.
//!
//! Only a panic that unwinds is answered so. A child that aborts, is killed by a signal or
//! exits is mirrored by the parent (the same signal or status), which the harness reports
//! as a crash and restarts, as before. A process with threads of its own does not fork (a
//! forked child would have none of them) and answers hello without the key.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{Input, Served};

/// What the last panic printed, for its crash frame (set by the hook `serve_forked` installs).
static REPORT: Mutex<Option<String>> = Mutex::new(None);

/// Whether this process may serve through forked children: it has one thread.
pub(crate) fn can_fork() -> bool {
    std::fs::read_dir("/proc/self/task").map(|d| d.count() == 1).unwrap_or(false)
}

/// Set while the device answers a case in a child, under `answering`: the hook then keeps
/// the report for the crash frame. Any other panic (the kit's own, a panic while panicking)
/// goes to the hook there was before, which prints it on stderr as usual.
static ANSWERING: AtomicBool = AtomicBool::new(false);

/// A panic hook that writes std's report (`thread 'main' panicked at file:line:col:` then
/// the message, and the backtrace when RUST_BACKTRACE asks for it) for the crash frame
/// rather than on stderr: the harness reads it there, and a write to stderr per crash woke
/// the harness's stderr reader for nothing (a campaign 7% slower on a device that panics
/// often).
fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !ANSWERING.load(Ordering::Relaxed) {
            return previous(info);
        }
        let thread = std::thread::current();
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        let mut text = format!("thread '{}' panicked at {at}:\n{}\n", thread.name().unwrap_or("<unnamed>"), message(info.payload()));
        let trace = Backtrace::capture(); // on with RUST_BACKTRACE=1, as std's hook
        if trace.status() == BacktraceStatus::Captured {
            text += &format!("stack backtrace:\n{}", short(&trace.to_string()));
        } else {
            text += "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        }
        if let Ok(mut r) = REPORT.lock() {
            *r = Some(text);
        }
    }));
}

/// `f`, the device answering a case, with a panic caught for its crash frame.
pub(crate) fn answering<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    ANSWERING.store(true, Ordering::Relaxed);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    ANSWERING.store(false, Ordering::Relaxed);
    r
}

/// The frames of a backtrace between std's markers, numbered from 0, as std's own hook
/// prints them: not the hook's and the unwinder's frames above the panic, nor the runtime's
/// below main. All of them when a marker is missing.
fn short(trace: &str) -> String {
    let mut frames: Vec<Vec<&str>> = Vec::new();
    for line in trace.lines() {
        let numbered = line.trim_start().split_once(": ").is_some_and(|(n, _)| n.parse::<u32>().is_ok());
        match frames.last_mut() {
            Some(frame) if !numbered => frame.push(line),
            _ => frames.push(vec![line]),
        }
    }
    let at = |marker: &str| frames.iter().position(|f| f[0].contains(marker));
    let (from, to) = match (at("__rust_end_short_backtrace"), at("__rust_begin_short_backtrace")) {
        (Some(end), Some(begin)) if end < begin => (end + 1, begin),
        _ => (0, frames.len()),
    };
    let mut out = String::new();
    for (i, frame) in frames[from..to].iter().enumerate() {
        let symbol = frame[0].trim_start().split_once(": ").map_or(frame[0], |(_, s)| s);
        out += &format!("{i:>4}: {symbol}\n");
        for line in &frame[1..] {
            out += line;
            out.push('\n');
        }
    }
    out
}

fn message(payload: &(dyn Any + Send)) -> &str {
    payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("Box<dyn Any>")
}

/// The report of the panic that unwound with `payload`: the hook's, else its message alone.
pub(crate) fn report(payload: &(dyn Any + Send)) -> String {
    REPORT.lock().ok().and_then(|mut r| r.take()).unwrap_or_else(|| format!("panicked: {}\n", message(payload)))
}

/// Unwind once in this process, quietly: the unwinder reads the program's unwind tables on
/// its first use, and every forked child would pay for that on its crash (measured: 15% of
/// the CPU a crash costs, 8 page faults of 58).
fn warm_unwinder() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let _ = std::panic::catch_unwind(|| panic!("warming the unwinder"));
    std::panic::set_hook(hook);
}

/// Serve frames through forked children until the input ends (see the module's comment).
/// A crashed child hands back `C`, the length of its unread input (le64) and the input; the
/// parent forks the next child on it at once and reaps the crashed one after, while the
/// new one serves.
/// `serve` is serve_frames catching panics, on the child's input and output.
pub(crate) fn serve_forked<R: Read, W: Write>(
    input: &mut Input<R>,
    out: &mut W,
    mut serve: impl FnMut(&mut Input<R>, &mut W) -> io::Result<Served>,
) -> io::Result<()> {
    warm_unwinder();
    install_hook();
    // SAFETY: plain signal call. Children must stay waitable: SIG_IGN (inherited from
    // whatever started us) would have them reaped unseen.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    let mut crashed: Option<libc::pid_t> = None;
    loop {
        out.flush()?;
        let mut fds = [0i32; 2];
        // SAFETY: a valid array for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: getpid cannot fail; the process has one thread (can_fork), so the child's
        // copy is whole.
        let parent = unsafe { libc::getpid() };
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: the read end is the parent's; the write end is ours alone from here.
            let mut back = unsafe {
                libc::close(fds[0]);
                File::from_raw_fd(fds[1])
            };
            // A child is not killed with its parent as the harness's `die_with_parent` kills
            // the parent: a hung child would outlive both. SAFETY: plain prctl.
            #[cfg(target_os = "linux")]
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(2); // the parent died before the prctl
                }
            }
            let code = match serve(input, out) {
                Ok(Served::Crashed) => {
                    let unread = &input.buf[input.pos..input.end];
                    let mut handed = Vec::with_capacity(9 + unread.len());
                    handed.push(b'C');
                    handed.extend_from_slice(&(unread.len() as u64).to_le_bytes());
                    handed.extend_from_slice(unread);
                    i32::from(back.write_all(&handed).is_err()) * 2
                }
                Ok(Served::Ended) => 0,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
                Err(e) => {
                    let _ = out.flush(); // the answers made so far, if the output still takes them
                    eprintln!("vsock-fuzz-adapter: {e}");
                    2
                }
            };
            // SAFETY: ends the child without running exit handlers the parent will run.
            unsafe { libc::_exit(code) };
        }
        if let Some(old) = crashed.take() {
            reap(old)?;
        }
        // SAFETY: the write end is the child's; the read end is ours alone.
        let mut from_child = unsafe {
            libc::close(fds[1]);
            File::from_raw_fd(fds[0])
        };
        let mut head = [0u8; 9];
        if from_child.read_exact(&mut head).is_ok() && head[0] == b'C' {
            let mut unread = vec![0u8; u64::from_le_bytes(head[1..].try_into().unwrap()) as usize];
            if from_child.read_exact(&mut unread).is_ok() {
                // Into the buffer as it is, whose pages the next child shares until it writes
                // them: a new one would be zeroed to its full 64 KiB there, a fault per page.
                if input.buf.len() < unread.len() {
                    input.buf.resize(unread.len(), 0);
                }
                input.buf[..unread.len()].copy_from_slice(&unread);
                input.end = unread.len();
                input.pos = 0;
                crashed = Some(pid);
                continue;
            }
        }
        // The input ended, or the child died another way: end as it did.
        let status = reap(pid)?;
        if libc::WIFSIGNALED(status) {
            // SAFETY: the default action of the signal that ended the child ends us too, with
            // no core of ours over the child's.
            unsafe {
                libc::setrlimit(libc::RLIMIT_CORE, &libc::rlimit { rlim_cur: 0, rlim_max: 0 });
                libc::signal(libc::WTERMSIG(status), libc::SIG_DFL);
                libc::raise(libc::WTERMSIG(status));
            }
        }
        std::process::exit(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 2 });
    }
}

/// Wait for child `pid` to end; its status.
fn reap(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    // SAFETY: pid is our child, not yet reaped.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(status)
}
