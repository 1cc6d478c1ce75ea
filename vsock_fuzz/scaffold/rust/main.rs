//! {{NAME}}: a virtio-vsock device wrapped as a vsock-fuzz target.
//!
//! The kit speaks the harness's protocol, builds each case's guest memory and pops the
//! chain off the available ring as a transport does (`vsock_fuzz_adapter::chain`);
//! `VsockDevice::parse` is the device. As written it is a correct one, so `vsock-fuzz check`
//! passes: put your device's parsing in its place and run `check` again.

use vsock_fuzz_adapter::chain::{pop_chain, Buf, Stream};
use vsock_fuzz_adapter::{run, Header, Packet, Parse, QueueKind, Reject, Target, HEADER_SIZE};

/// The largest split queue the spec allows; lower it to what your transport accepts.
const MAX_QUEUE_SIZE: u64 = 32768;

/// The device serving one case: the queue it serves decides which buffers it may use.
struct VsockDevice<'a> {
    p: &'a Parse<'a>,
}

impl VsockDevice<'_> {
    // TODO: your device's parsing here. It gets the chain's buffers in order and returns the
    // header it decoded (tx) and the guest memory it reads (tx) or writes (rx), or its own
    // error name (`Reject::of(&e)` takes your error enum's variant). Report the host slices
    // your parser really uses (`Packet::header_host` / `data_host` translate them back).
    fn parse(&self, chain: &[Buf]) -> Result<Packet, Reject> {
        let p = self.p;
        let mut stream = Stream::new(p.memory, chain, |b: &Buf| self.direction(b));
        let mut pkt = Packet::default();
        let header = stream.take(HEADER_SIZE as u64)?.ok_or_else(|| Reject::new("HeaderTooShort", ""))?;
        let mut raw = [0u8; HEADER_SIZE];
        let mut at = 0;
        for &(ptr, len) in &header {
            // SAFETY: the stream checked that the piece lies in one mapping, kept until the next case
            raw[at..at + len].copy_from_slice(unsafe { std::slice::from_raw_parts(ptr, len) });
            at += len;
            pkt.header_host(p.memory, ptr, len);
        }
        let data_len = match p.queue {
            QueueKind::Tx => {
                let h = Header::from_bytes(&raw);
                if h.len as u64 > p.max_data_size {
                    return Err(Reject::new("InvalidHeaderLen", format!("hdr.len {}", h.len)));
                }
                pkt.header = Some(h);
                h.len as u64
            }
            // a driver may offer more room than one packet takes; the device writes no more
            QueueKind::Rx => stream.left().min(p.max_data_size),
        };
        let data = stream.take(data_len)?.ok_or_else(|| Reject::new("DataTooShort", format!("hdr.len {data_len}")))?;
        for (ptr, len) in data {
            pkt.data_host(p.memory, ptr, len);
        }
        Ok(pkt)
    }

    /// tx reads device-readable buffers only, rx writes device-writable ones (2.7.4.1).
    fn direction(&self, b: &Buf) -> Result<(), Reject> {
        if b.writable != (self.p.queue == QueueKind::Rx) {
            let name = if b.writable { "UnexpectedWriteOnlyDescriptor" } else { "UnexpectedReadOnlyDescriptor" };
            return Err(Reject::new(name, format!("buffer at {:#x}", b.addr)));
        }
        Ok(())
    }
}

fn main() {
    // What the device offers a guest: the harness judges it by that (a driver never goes
    // past it). Drop VIRTIO_F_INDIRECT_DESC if your queue does not follow indirect tables.
    let target = Target {
        features: vec!["VIRTIO_F_VERSION_1".into(), "VIRTIO_F_INDIRECT_DESC".into()],
        max_queue_size: Some(MAX_QUEUE_SIZE),
        // x86-64 user space is 2^47 bytes: a larger region cannot be mapped
        max_region_size: Some(1 << 46),
        ..Target::new("{{NAME}}", "0.1.0")
    };
    run(&target, |p: &Parse| VsockDevice { p }.parse(&pop_chain(p, MAX_QUEUE_SIZE)?));
}
