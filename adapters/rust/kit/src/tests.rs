//! Round trips through both transports, with a device that answers from memory.

use super::*;
use serde_json::{json, Value};

/// Reads the head descriptor and reports its buffer: the header (tx) and the rest as data.
fn toy(p: &Parse) -> Result<Packet, Reject> {
    let mut d = [0u8; 16];
    p.memory
        .read(p.ring.desc_table + 16 * p.ring.head, &mut d)
        .ok_or_else(|| Reject::new("DescriptorUnreadable", "head descriptor"))?;
    let addr = u64::from_le_bytes(d[..8].try_into().unwrap());
    let len = u32::from_le_bytes(d[8..12].try_into().unwrap()) as u64;
    if len < HEADER_SIZE as u64 {
        return Err(Reject::new("HeaderTooShort", format!("{len} bytes")));
    }
    let ptr = p.memory.host_ptr(addr, len).ok_or_else(|| Reject::new("CrossesRegions", "the buffer is not one host slice"))?;
    let mut pkt = Packet::default();
    if p.queue == QueueKind::Tx {
        let mut h = [0u8; HEADER_SIZE];
        p.memory.read(addr, &mut h).unwrap();
        pkt.header = Some(Header::from_bytes(&h));
    }
    pkt.header_host(p.memory, ptr, HEADER_SIZE);
    if len > HEADER_SIZE as u64 {
        pkt.data_host(p.memory, ptr.wrapping_add(HEADER_SIZE), (len - HEADER_SIZE as u64) as usize);
    }
    Ok(pkt)
}

fn target() -> Target {
    Target {
        features: vec!["VIRTIO_F_VERSION_1".into()],
        max_queue_size: Some(256),
        max_regions: Some(2),
        ..Target::new("toy", "0")
    }
}

fn header() -> Header {
    Header { src_cid: 3, dst_cid: 2, src_port: 1024, dst_port: 5000, len: 5, type_: 1, op: 5, buf_alloc: 262144, ..Default::default() }
}

/// One descriptor at 0x1000 -> 49 bytes at 0x2000 (header + 5 bytes), avail ring at 0x1100.
fn case(queue: QueueKind) -> Case {
    let mut desc = 0x2000u64.to_le_bytes().to_vec();
    desc.extend_from_slice(&49u32.to_le_bytes());
    desc.extend_from_slice(&[0, 0, 0, 0]);
    let mut buf = header().to_bytes().to_vec();
    buf.extend_from_slice(b"hello");
    Case {
        queue,
        max_data_size: 65536,
        regions: vec![(0x1000, 0x1000), (0x2000, 0x1000)],
        writes: vec![(0x1000, desc), (0x2000, buf), (0x1100, vec![0, 0, 1, 0, 0, 0])],
        ring: Ring { size: 16, desc_table: 0x1000, avail: 0x1100, used: 0x1200, head: 0 },
    }
}

fn case_json(id: u64, c: &Case) -> String {
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    json!({
        "id": id, "op": "parse", "queue": if c.queue == QueueKind::Rx { "rx" } else { "tx" },
        "max_data_size": c.max_data_size,
        "memory": c.regions.iter().map(|&(gpa, size)| json!({"gpa": gpa, "size": size})).collect::<Vec<_>>(),
        "writes": c.writes.iter().map(|(gpa, d)| json!({"gpa": gpa, "hex": hex(d)})).collect::<Vec<_>>(),
        "ring": {"size": c.ring.size, "desc_table": c.ring.desc_table, "avail": c.ring.avail,
                 "used": c.ring.used, "head": c.ring.head},
    })
    .to_string()
}

fn serve_str(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    serve(&target(), toy, input, &mut out).unwrap();
    out
}

fn lines(out: &[u8]) -> Vec<Value> {
    out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
}

#[test]
fn error_enum_variant_names() {
    #[derive(Debug)]
    #[allow(dead_code)] // the fields are read only through Debug
    enum E {
        InvalidHeaderLen(u32),
        DescriptorChainTooShort,
        Mem { at: u64 },
    }
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "{self:?}!")
        }
    }
    assert_eq!(Reject::of(&E::InvalidHeaderLen(7)), Reject::new("InvalidHeaderLen", "InvalidHeaderLen(7)!"));
    assert_eq!(Reject::of(&E::DescriptorChainTooShort).error, "DescriptorChainTooShort");
    assert_eq!(Reject::of(&E::Mem { at: 1 }).error, "Mem");
}

#[test]
fn header_bytes_round_trip() {
    let h = Header { fwd_cnt: 0xdeadbeef, flags: 7, ..header() };
    assert_eq!(Header::from_bytes(&h.to_bytes()), h);
    assert_eq!(h.to_bytes()[24..28], 5u32.to_le_bytes()); // len at offset 24, as in memory
}

#[test]
fn v1_hello_and_parse() {
    let mut input = br#"{"op": "hello", "protocol": 1}"#.to_vec();
    input.push(b'\n');
    input.extend_from_slice(case_json(7, &case(QueueKind::Tx)).as_bytes());
    input.extend_from_slice(b"\n\n");
    input.extend_from_slice(case_json(8, &case(QueueKind::Rx)).as_bytes());
    let out = lines(&serve_str(&input));
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["ok"], true);
    assert_eq!(out[0]["protocol"], 1);
    assert_eq!(out[0]["name"], "toy");
    assert!(out[0].get("mode").is_none(), "no mode without an offer");
    assert_eq!(out[0]["device"], json!({"features": ["VIRTIO_F_VERSION_1"], "max_queue_size": 256, "max_regions": 2}));
    assert_eq!(
        out[1],
        json!({"id": 7, "ok": true,
               "header": {"src_cid": 3, "dst_cid": 2, "src_port": 1024, "dst_port": 5000, "len": 5,
                          "type": 1, "op": 5, "flags": 0, "buf_alloc": 262144, "fwd_cnt": 0},
               "header_slices": [[0x2000, 44]], "data_slices": [[0x2000 + 44, 5]]})
    );
    assert_eq!(out[2], json!({"id": 8, "ok": true, "header_slices": [[0x2000, 44]], "data_slices": [[0x2000 + 44, 5]]}));
}

#[test]
fn v1_rejections_and_bad_requests() {
    let mut c = case(QueueKind::Tx);
    c.writes[0].1[8] = 10; // head descriptor of 10 bytes
    let mut too_many = case(QueueKind::Tx);
    too_many.regions.push((0x10000, 0x1000));
    let mut huge = case(QueueKind::Tx);
    huge.regions.push((1 << 63, 1 << 62));
    let mut outside = case(QueueKind::Tx);
    outside.writes.push((0x3000, vec![1]));
    let mut input = String::new();
    for (i, c) in [c, too_many, huge, outside].iter().enumerate() {
        input += &case_json(i as u64, c);
        input.push('\n');
    }
    input += "{\"id\": 9, \"op\": \"parse\"}\nnot json\n{\"id\": \"x\", \"op\": \"dance\"}\n";
    let out = lines(&serve_str(input.as_bytes()));
    let errors: Vec<_> = out.iter().map(|a| (a["id"].clone(), a["error"].as_str().unwrap().to_string())).collect();
    assert_eq!(
        errors,
        [
            (json!(0), "HeaderTooShort".into()),
            (json!(1), "Unsupported".into()), // over max_regions
            (json!(2), "Unsupported".into()), // a region the adapter cannot map (2^62 bytes)
            (json!(3), "BadRequest".into()),
            (json!(9), "BadRequest".into()),
            (Value::Null, "BadRequest".into()),
            (json!("x"), "BadRequest".into()),
        ]
    );
    assert_eq!(out[0]["detail"], "10 bytes");
}

#[test]
fn raw_case_round_trip() {
    let mut c = case(QueueKind::Rx);
    c.max_data_size = u64::MAX;
    c.ring.desc_table = 1 << 63;
    c.regions.push((u64::MAX - 5, 6));
    assert_eq!(wire::decode_case(&wire::encode_case(&c)).unwrap(), c);
    let b = wire::encode_case(&c);
    assert!(wire::decode_case(&b[..b.len() - 1]).is_err());
    assert!(wire::decode_case(&[1, 0]).is_err(), "the structured form is not a frame's case");
}

/// A hello asking for polling sets how long a read that would block polls the input first
/// (capped at MAX_POLL); the answers are the same.
#[test]
fn hello_poll_us_sets_the_poll_of_a_descriptor() {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: a fresh pipe, each end owned by one File.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, mut w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    w.write_all(b"{\"op\":\"hello\",\"protocol\":1,\"poll_us\":5000}\n").unwrap();
    w.write_all(case_json(7, &case(QueueKind::Tx)).as_bytes()).unwrap();
    w.write_all(b"\n").unwrap();
    drop(w);
    let mut input = Input { r: &r, buf: Vec::new(), pos: 0, end: 0, fd: Some(fds[0]), poll: Duration::ZERO };
    let mut out = Vec::new();
    serve_input(&target(), toy, &mut input, &mut out).unwrap();
    assert_eq!(input.poll, MAX_POLL);
    let out = lines(&out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1], lines(&serve_str(&[br#"{"op": "hello", "protocol": 1}"#.as_slice(), b"\n",
                                          case_json(7, &case(QueueKind::Tx)).as_bytes()].concat()))[1]);
}

/// A hello offering frames-v1, then frames; answers decoded as the harness does.
#[test]
fn frames_round_trip() {
    let mut input = b"{\"op\":\"hello\",\"protocol\":1,\"modes\":[\"frames-v1\"]}\n".to_vec();
    let mut bad = case(QueueKind::Tx);
    bad.writes[0].1[8] = 10;
    for (id, c) in [(1u32, case(QueueKind::Tx)), (2, case(QueueKind::Rx)), (u32::MAX, bad)] {
        let body = wire::encode_case(&c);
        input.extend_from_slice(&(4 + body.len() as u32).to_le_bytes());
        input.extend_from_slice(&id.to_le_bytes());
        input.extend_from_slice(&body);
    }
    input.extend_from_slice(&6u32.to_le_bytes());
    input.extend_from_slice(&[5, 0, 0, 0, 1, 0]); // id 5, not the raw form
    let out = serve_str(&input);
    let nl = out.iter().position(|&b| b == b'\n').unwrap();
    let hello: Value = serde_json::from_slice(&out[..nl]).unwrap();
    assert_eq!(hello["mode"], "frames-v1");
    let mut rest = &out[nl + 1..];
    let mut answers = Vec::new();
    while !rest.is_empty() {
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        answers.push(wire::decode_answer_frame(&rest[4..4 + n]).unwrap());
        rest = &rest[4 + n..];
    }
    let data = vec![(0x2000 + 44, 5)];
    assert_eq!(
        answers,
        [
            (1, Ok(Packet { header: Some(header()), header_slices: vec![(0x2000, 44)], data_slices: data.clone() })),
            (2, Ok(Packet { header: None, header_slices: vec![(0x2000, 44)], data_slices: data })),
            (u32::MAX, Err(Reject::new("HeaderTooShort", "10 bytes"))),
            (5, Err(Reject::new("BadRequest", "a frame carries a case in the raw binary form (byte 1 bit 1 set)"))),
        ]
    );
    // and the frame encoder's bytes are the spec's: le32 n | le32 id | status | ...
    let mut f = Vec::new();
    wire::answer_frame(&mut f, 3, &Err(Reject::new("E", "d"))).unwrap();
    assert_eq!(f, [8, 0, 0, 0, 3, 0, 0, 0, 0, 1, b'E', b'd']);
}

#[test]
fn cases_do_not_leak_memory_into_each_other() {
    // the second case writes no descriptor: its table must read as zero (len 0), not
    // as the first case's descriptor
    let first = case(QueueKind::Tx);
    let mut second = case(QueueKind::Tx);
    second.writes.remove(0);
    let input = format!("{}\n{}\n", case_json(1, &first), case_json(2, &second));
    let out = lines(&serve_str(input.as_bytes()));
    assert_eq!(out[0]["ok"], true);
    assert_eq!(out[1]["error"], "HeaderTooShort");
}

/// A panicking device is not caught: the panic leaves `serve` (the process would exit
/// with 101, a crash), and the answers to the cases before it are flushed on the way out
/// so the harness blames the case in flight, not an earlier one.
#[test]
fn a_panic_unwinds_after_flushing_earlier_answers() {
    let input = format!("{}\n{}\n", case_json(1, &case(QueueKind::Tx)), case_json(2, &case(QueueKind::Rx)));
    let mut out = Vec::new();
    let panicky = |p: &Parse| match p.queue {
        QueueKind::Tx => toy(p),
        QueueKind::Rx => panic!("device bug"),
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serve(&target(), panicky, input.as_bytes(), io::BufWriter::new(&mut out))
    }));
    assert!(r.is_err(), "the panic reached the caller");
    let answers = lines(&out);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["id"], 1);
}

/// Frames served catching panics (a forked child's, `crashes`): the case the device
/// panicked on is answered with a crash frame (status 2, the report), the answers before it
/// come first, and the input is left at the next request for the next child.
#[test]
fn a_caught_panic_is_answered_with_a_crash_frame_and_leaves_the_next_request_unread() {
    let mut input = Vec::new();
    for (id, queue) in [(1u32, QueueKind::Tx), (2, QueueKind::Rx), (3, QueueKind::Tx)] {
        let body = wire::encode_case(&case(queue));
        input.extend_from_slice(&(4 + body.len() as u32).to_le_bytes());
        input.extend_from_slice(&id.to_le_bytes());
        input.extend_from_slice(&body);
    }
    let mut device = |p: &Parse| match p.queue {
        QueueKind::Tx => toy(p),
        QueueKind::Rx => panic!("device bug"),
    };
    let mut reader = Input { r: &input[..], buf: Vec::new(), pos: 0, end: 0, fd: None, poll: Duration::ZERO };
    let mut out = Vec::new();
    let served = serve_frames(&target(), &mut device, &mut GuestMemory::default(), None, &mut reader, &mut out, true);
    assert!(matches!(served, Ok(Served::Crashed)));
    let n = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize;
    assert_eq!(wire::decode_answer_frame(&out[4..4 + n]).unwrap().0, 1);
    let crash = &out[4 + n..];
    let m = u32::from_le_bytes(crash[..4].try_into().unwrap()) as usize;
    assert_eq!(crash.len(), 4 + m, "nothing after the crash frame");
    assert_eq!(&crash[4..9], &[2, 0, 0, 0, 2], "id 2, status 2");
    assert!(String::from_utf8_lossy(&crash[9..]).contains("device bug"));
    // What is left unserved is request 3, whole (read ahead or still unread).
    let mut left = reader.buf[reader.pos..reader.end].to_vec();
    reader.r.read_to_end(&mut left).unwrap();
    assert_eq!(left.len(), 8 + wire::encode_case(&case(QueueKind::Tx)).len());
    assert_eq!(&left[4..8], &3u32.to_le_bytes());
}

/// The coverage runtime: counters registered as SanitizerCoverage does, counted only while
/// the device runs, added into the harness's region (saturating), and counted on a panic.
#[test]
fn coverage_counts_only_the_device_into_the_region() {
    static mut COUNTERS: [u8; 24] = [0; 24];
    // SAFETY: a memfd of our own; the counters are a static only this test touches
    let (fd, counters) = unsafe {
        let fd = libc::memfd_create(c"cov".as_ptr(), 0);
        assert!(fd >= 0 && libc::ftruncate(fd, 16) == 0);
        let c = &raw mut COUNTERS;
        coverage::__sanitizer_cov_8bit_counters_init((*c).as_mut_ptr(), (*c).as_mut_ptr().add(24));
        coverage::__sanitizer_cov_8bit_counters_init((*c).as_mut_ptr(), (*c).as_mut_ptr().add(24)); // a repeat
        (fd, &mut *c)
    };
    assert_eq!(coverage::counters(), 24);
    assert!(coverage::Channel::map(fd, 12).is_none(), "a size that is no power of two");
    let ch = coverage::Channel::map(fd, 16).unwrap();
    // SAFETY: a second view of the 16-byte memfd, read only here
    let region = unsafe {
        let p = libc::mmap(std::ptr::null_mut(), 16, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
        assert_ne!(p, libc::MAP_FAILED);
        std::slice::from_raw_parts(p as *const u8, 16)
    };
    counters[3] = 9; // counted before the device runs (the kit's decoding): dropped
    {
        let _counting = ch.begin();
        assert!(counters.iter().all(|&c| c == 0));
        counters[1] = 2;
        counters[17] = 200; // folds onto counter 1
        counters[5] = 7;
    }
    assert_eq!(&region[..6], &[0, 202, 0, 0, 0, 7]);
    {
        let _counting = ch.begin();
        counters[1] = 100;
    }
    assert_eq!(region[1], 255, "saturates");
    let crashed = std::panic::catch_unwind(|| {
        let _counting = ch.begin();
        // SAFETY: the same static; the guard holds no reference into it
        unsafe { (*(&raw mut COUNTERS))[9] = 1 };
        panic!("the device crashed");
    });
    assert!(crashed.is_err());
    assert_eq!(region[9], 1, "a panicking case's edges count");
}

/// shm-8bit-v2: the compare hooks record operand pairs into the table only while the device
/// runs (the kit's own decoding compares too, and would push the device's out), the
/// table keeps the most recent `slots` (entry k in slot k % slots, the count going on), and a
/// file too short for the table is refused rather than mapped (a write past its end faults).
#[test]
fn compares_are_recorded_while_the_device_runs_into_a_bounded_table() {
    // No counters registered here and compares() rather than begin(): the counter test runs
    // beside this one and begin() would zero its counters.
    const SLOTS: usize = 4;
    let whole = 16 + coverage::CMP_HEADER + coverage::CMP_ENTRY * SLOTS;
    // SAFETY: a memfd of our own
    let fd = unsafe {
        let fd = libc::memfd_create(c"cmp".as_ptr(), 0);
        assert!(fd >= 0 && libc::ftruncate(fd, (whole - 1) as i64) == 0);
        fd
    };
    assert!(coverage::Channel::map_with_table(fd, 16, SLOTS).is_none(), "a file one byte short of the table");
    // SAFETY: growing our own memfd
    assert_eq!(unsafe { libc::ftruncate(fd, whole as i64) }, 0);
    let ch = coverage::Channel::map_with_table(fd, 16, SLOTS).unwrap();
    assert_eq!(ch.name(), coverage::CHANNEL_CMP);
    assert_eq!(coverage::Channel::map(fd, 16).unwrap().name(), coverage::CHANNEL);
    let read = || {
        let mut buf = vec![0u8; whole];
        // SAFETY: reading our own memfd into a buffer of its size
        assert_eq!(unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), whole, 0) }, whole as isize);
        let t = &buf[16..];
        let count = u64::from_le_bytes(t[..8].try_into().unwrap());
        let entries: Vec<(u8, u8, u64, u64)> = (0..SLOTS)
            .map(|i| {
                let e = &t[coverage::CMP_HEADER + coverage::CMP_ENTRY * i..][..coverage::CMP_ENTRY];
                (e[0], e[1], u64::from_le_bytes(e[8..16].try_into().unwrap()), u64::from_le_bytes(e[16..24].try_into().unwrap()))
            })
            .collect();
        (count, entries)
    };
    coverage::__sanitizer_cov_trace_cmp4(1, 2); // the kit's decoding: not recorded
    assert_eq!(read().0, 0);
    {
        let _recording = ch.compares();
        coverage::__sanitizer_cov_trace_const_cmp2(0xB00F, 7);
        coverage::__sanitizer_cov_trace_cmp8(u64::MAX, 3);
        coverage::__sanitizer_cov_trace_cmp1(9, 10); // 1-byte compares are left out
        let cases = [3u64, 32, 10, 20, 40];
        // SAFETY: a switch table as SanitizerCoverage lays it out
        unsafe { coverage::__sanitizer_cov_trace_switch(25, cases.as_ptr()) };
    }
    let (count, entries) = read();
    assert_eq!(count, 4);
    assert_eq!(entries, vec![(2, coverage::CMP_CONST, 0xB00F, 7), (8, coverage::CMP_VARIABLE, u64::MAX, 3),
                             (4, coverage::CMP_SWITCH, 25, 20), (4, coverage::CMP_SWITCH, 25, 40)]);
    coverage::__sanitizer_cov_trace_cmp4(5, 6); // after end(): not recorded
    assert_eq!(read().0, 4);
    {
        let _recording = ch.compares();
        for k in 0..6u32 {
            coverage::__sanitizer_cov_trace_cmp4(1000 + k, 0);
        }
    }
    let (count, entries) = read();
    assert_eq!(count, 10, "the count goes on past the table");
    // entries 4..9 went into slots 0, 1, 2, 3, 0, 1: the four most recent are kept
    let kept: Vec<u64> = entries.iter().map(|e| e.2).collect();
    assert_eq!(kept, vec![1004, 1005, 1002, 1003]);
}
