"""Crash titles: a dead target's last words on stderr -> the site they name, the same for one
site on every run and different for two sites. The samples are what Rust, glibc and the
sanitizers print (taken from real runs, with their pids, thread ids and addresses)."""

import re

import pytest

from vsock_fuzz.targets.crash_title import MAX_TITLE, crash_title

RUST_PANIC = """\
thread 'main' (7302) panicked at src/packet.rs:212:31:
index out of bounds: the len is 44 but the index is 4096
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
"""

# RUST_BACKTRACE=1: the same panic on another run (another thread id and index), a backtrace after it.
RUST_PANIC_BACKTRACE = """\
thread 'main' (7275) panicked at src/packet.rs:212:31:
index out of bounds: the len is 44 but the index is 8191
stack backtrace:
   0: __rustc::rust_begin_unwind
             at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:689:5
   1: core::panicking::panic_fmt
             at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs:80:14
   2: core::panicking::panic_bounds_check
             at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs:271:5
   3: vsock_target::packet::parse
             at ./src/packet.rs:212:31
   4: vsock_target::main
             at ./src/main.rs:5:20
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.
"""

# Rust 1.73 to 1.8x: no thread id.
RUST_PANIC_NO_TID = RUST_PANIC.replace(" (7302)", "")

# Rust < 1.73: message quoted before the location, on one line.
RUST_PANIC_OLD = """\
thread 'main' panicked at 'index out of bounds: the len is 44 but the index is 4096', src/packet.rs:212:31
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
"""

RUST_PANIC_DEPENDENCY = """\
thread '<unnamed>' (811) panicked at /home/dev/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/virtio-queue-0.12.0/src/chain.rs:123:45:
called `Result::unwrap()` on an `Err` value: InvalidDescTableAlign
"""

ASSERT_HDR = "/usr/local/bin/vsock-dev: pkt.c:88: parse_hdr: Assertion `n >= 44' failed.\n"
ASSERT_RING = "/usr/local/bin/vsock-dev: ring.c:31: pop_avail: Assertion `idx < size' failed.\n"

ASAN_HEAP = """\
=================================================================
==7309==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6040000000bc at pc 0x561af936c78c bp 0x7fff1a762260 sp 0x7fff1a761a30
WRITE of size 52 at 0x6040000000bc thread T0
    #0 0x561af936c78b in __asan_memset (/tmp/ct/a_asan+0xa378b) (BuildId: e0abf32de5342b25532b6826460e944da736b4c6)
    #1 0x561af93a803a in fill /home/ci/dev/src/pkt.c:6:28
    #2 0x561af93a83e4 in main /home/ci/dev/src/main.c:9:69
    #3 0x7fd620b39249 in __libc_start_call_main csu/../sysdeps/nptl/libc_start_call_main.h:58:16
    #4 0x7fd620b39304 in __libc_start_main csu/../csu/libc-start.c:360:3
    #5 0x561af92ea310 in _start (/tmp/ct/a_asan+0x21310) (BuildId: e0abf32de5342b25532b6826460e944da736b4c6)

0x6040000000bc is located 0 bytes to the right of 44-byte region [0x604000000090,0x6040000000bc)
allocated by thread T0 here:
    #0 0x561af936d15e in __interceptor_malloc (/tmp/ct/a_asan+0xa415e) (BuildId: e0abf32de5342b25532b6826460e944da736b4c6)
    #1 0x561af93a83d2 in main /home/ci/dev/src/main.c:9:50

SUMMARY: AddressSanitizer: heap-buffer-overflow (/tmp/ct/a_asan+0xa378b) (BuildId: e0abf32de5342b25532b6826460e944da736b4c6) in __asan_memset
Shadow bytes around the buggy address:
  0x0c087fff8000: fa fa fd fd fd fd fd fd fa fa 00 00 00 00 00 03
=>0x0c087fff8010: fa fa 00 00 00 00 00[04]fa fa fa fa fa fa fa fa
==7309==ABORTING
"""

# A recoverable UBSan error first, then the segfault ASan catches: the last report is the crash.
ASAN_SEGV = """\
a.c:10:66: runtime error: pointer index expression with base 0x000000000002 overflowed to 0xfffffffffffffffe
SUMMARY: UndefinedBehaviorSanitizer: undefined-behavior a.c:10:66 in
AddressSanitizer:DEADLYSIGNAL
=================================================================
==7324==ERROR: AddressSanitizer: SEGV on unknown address (pc 0x558dde8ae62a bp 0x7fff6e7c9d70 sp 0x7fff6e7c9c30 T0)
==7324==The signal is caused by a READ memory access.
    #0 0x558dde8ae62a in walk_chain /home/ci/dev/src/chain.c:10:78
    #1 0x7f27e4dbd249 in __libc_start_call_main csu/../sysdeps/nptl/libc_start_call_main.h:58:16

AddressSanitizer can not provide additional info.
SUMMARY: AddressSanitizer: SEGV /home/ci/dev/src/chain.c:10:78 in walk_chain
==7324==ABORTING
"""

UBSAN = """\
src/hdr.c:11:62: runtime error: signed integer overflow: 2147483647 + 2 cannot be represented in type 'int'
SUMMARY: UndefinedBehaviorSanitizer: undefined-behavior src/hdr.c:11:62 in
"""


def title(stderr: str, ending: str = "exited with status 101") -> str:
    return crash_title(stderr, ending)


def test_a_rust_panic_is_titled_by_its_place_and_message():
    assert title(RUST_PANIC) == "panicked at src/packet.rs:212:31: index out of bounds: the len is N but the index is N"


def test_one_panic_site_has_one_title_with_or_without_a_backtrace_and_across_rust_versions():
    titles = {title(s) for s in (RUST_PANIC, RUST_PANIC_BACKTRACE, RUST_PANIC_NO_TID, RUST_PANIC_OLD)}
    assert titles == {title(RUST_PANIC)}
    assert title(RUST_PANIC, "killed by SIGABRT") == title(RUST_PANIC), "panic = \"abort\" is the same panic"


def test_two_panic_sites_have_two_titles():
    other_line = RUST_PANIC.replace("212:31", "230:31")
    other_column = RUST_PANIC.replace("212:31", "212:47")  # a second index on the same line
    assert len({title(RUST_PANIC), title(other_line), title(other_column)}) == 3


def test_a_dependency_panic_names_the_crate_not_this_machine_s_cargo_home():
    t = title(RUST_PANIC_DEPENDENCY)
    assert t == ("panicked at virtio-queue-0.12.0/src/chain.rs:123:45: "
                 "called `Result::unwrap()` on an `Err` value: InvalidDescTableAlign")


def test_an_earlier_panic_a_device_caught_is_not_the_one_that_killed_it():
    caught = "thread 'main' (1) panicked at src/ring.rs:9:5:\nattempt to add with overflow\n"
    assert title(caught + RUST_PANIC) == title(RUST_PANIC)


def test_a_glibc_assert_is_titled_without_the_program_name():
    assert title(ASSERT_HDR, "killed by SIGABRT") == "pkt.c:88: parse_hdr: Assertion `n >= 44' failed."
    moved = ASSERT_HDR.replace("/usr/local/bin/vsock-dev", "./build/vsock-dev")
    assert title(moved, "killed by SIGABRT") == title(ASSERT_HDR, "killed by SIGABRT")


def test_two_asserts_are_two_titles_though_both_abort():
    a, b = title(ASSERT_HDR, "killed by SIGABRT"), title(ASSERT_RING, "killed by SIGABRT")
    assert a != b
    assert b == "ring.c:31: pop_avail: Assertion `idx < size' failed."


def test_musl_says_its_assert_otherwise_and_gets_the_same_title():
    musl = "Assertion failed: n >= 44 (pkt.c: parse_hdr: 88)\n"
    assert title(musl, "killed by SIGABRT") == title(ASSERT_HDR, "killed by SIGABRT")


def test_an_asan_report_is_its_kind_and_the_first_frame_outside_the_runtime():
    # Frame #0 is ASan's memset interceptor; #1 is the device's code.
    assert title(ASAN_HEAP, "exited with status 1") == "heap-buffer-overflow in fill dev/src/pkt.c:6:28"


def test_an_asan_segv_after_a_recovered_ubsan_error_is_titled_by_the_segv():
    assert title(ASAN_SEGV, "exited with status 1") == "SEGV on unknown address in walk_chain dev/src/chain.c:10:78"


def test_a_ubsan_report_is_its_error_and_place():
    assert title(UBSAN, "exited with status 1") == "runtime error: signed integer overflow at src/hdr.c:11:62"


def test_one_asan_site_has_one_title_across_runs():
    again = re.sub(r"0x[0-9a-f]{8,}", lambda m: hex(int(m.group(), 16) + 0x1000), ASAN_HEAP).replace("7309", "9")
    assert again != ASAN_HEAP and title(again) == title(ASAN_HEAP)


def test_a_plain_segfault_is_its_signal():
    assert title("", "killed by SIGSEGV") == "killed by SIGSEGV"
    assert title("\n\n", "killed by SIGSEGV") == "killed by SIGSEGV"


def test_a_plain_exit_is_its_status_and_last_words_without_numbers_that_vary():
    said = "listening\nerror: queue 3 at 0x7f00123000 is not ready\n\n"
    assert title(said, "exited with status 3") == "exited with status 3: error: queue N at 0xN is not ready"
    assert title(said.replace("3 at 0x7f00123000", "5 at 0x7f00999000"), "exited with status 3") == \
        title(said, "exited with status 3")
    assert title(said, "exited with status 4") != title(said, "exited with status 3")


def test_a_garbage_answer_is_titled_by_its_reason_not_by_the_garbage():
    assert title("", "printed a line that is not JSON: b'\\x00\\xff'") == "printed a line that is not JSON"


@pytest.mark.parametrize("stderr", [RUST_PANIC, RUST_PANIC_BACKTRACE, RUST_PANIC_OLD, RUST_PANIC_DEPENDENCY,
                                    ASSERT_HDR, ASAN_HEAP, ASAN_SEGV, UBSAN, "x" * 1000 + " 0xdeadbeef 12345\n"])
def test_no_title_carries_an_address_a_pid_or_a_thread_id(stderr):
    t = title(stderr)
    assert not re.search(r"0x[0-9a-fA-F]{2,}", t), t
    assert not re.search(r"\b(7302|7275|811|7309|7324|12345)\b", t), t
    assert len(t) <= MAX_TITLE
