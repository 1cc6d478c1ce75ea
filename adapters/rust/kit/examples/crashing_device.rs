//! A device that crashes on request, for tests/test_crash_frames.py: it panics when a case's
//! max_data_size is 1, aborts when it is 2 (a crash no crash frame can answer) and refuses
//! every other case, saying how many cases its process has seen (state a crash must not
//! carry over to the next case).
use vsock_fuzz_adapter::{run, Packet, Parse, Reject, Target};

fn main() {
    let mut seen = 0;
    run(&Target::new("crashing device", "1"), move |p: &Parse| -> Result<Packet, Reject> {
        seen += 1;
        match p.max_data_size {
            1 => panic!("asked to panic"),
            2 => std::process::abort(),
            _ => Err(Reject::new("Refused", format!("case {seen} of this process"))),
        }
    })
}
