//! A device that crashes on request, for tests/test_crash_frames.py: it panics when a case's
//! max_data_size is 1, aborts when it is 2 (a crash no crash frame can answer) and refuses
//! every other case.
use vsock_fuzz_adapter::{run, Packet, Parse, Reject, Target};

fn main() {
    run(&Target::new("crashing device", "1"), |p: &Parse| -> Result<Packet, Reject> {
        match p.max_data_size {
            1 => panic!("asked to panic"),
            2 => std::process::abort(),
            n => Err(Reject::new("Refused", format!("max_data_size {n}"))),
        }
    })
}
