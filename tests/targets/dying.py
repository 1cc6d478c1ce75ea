#!/usr/bin/env python3
"""A protocol v1 device that dies as a real one does, saying where: `dying.py KIND SITE`.

It rejects every case but those whose max_data_size is odd, on which it dies with the
report a real runtime prints for a bug at SITE, carrying what varies from run to run (its
pid, a thread id, addresses, the odd number itself):

  panic    a Rust panic at SITE (`src/tx.rs:40:17`), exit status 101; with a backtrace
           after it when RUST_BACKTRACE is 1 or full, as Rust prints one
  queues   a Rust panic at src/tx.rs:40:17 on the tx queue, src/rx.rs:88:9 on rx
  assert   a glibc assert at SITE (`pkt.c:88`), then SIGABRT
  asan     an AddressSanitizer heap-buffer-overflow report whose first own frame is at SITE,
           longer than the 2000 characters of stderr an answer's detail keeps, then exit 1

DYING_LOG, if set, names a file that gets a line `RUST_BACKTRACE=<value>` per death.
It imports nothing from vsock_fuzz: it is a foreign program.
"""

import json
import os
import signal
import sys


def rust_panic(site: str, index: int) -> None:
    say(f"thread 'main' ({os.getpid()}) panicked at {site}:\n"
        f"index out of bounds: the len is 44 but the index is {index}\n")
    if os.environ.get("RUST_BACKTRACE") in ("1", "full"):
        function = "dying::" + site.split("/")[-1].split(".")[0] + "_packet"
        say("stack backtrace:\n"
            "   0: __rustc::rust_begin_unwind\n"
            "             at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:689:5\n"
            "   1: core::panicking::panic_bounds_check\n"
            "             at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs:271:5\n"
            f"   2: {function}\n"
            f"             at ./{site}\n"
            "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n")
    else:
        say("note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n")
    os._exit(101)


def glibc_assert(site: str) -> None:
    file, line = site.rsplit(":", 1)
    say(f"{sys.argv[0]}: {file}:{line}: parse_{file.split('.')[0]}: Assertion `n >= 44' failed.\n")
    os.kill(os.getpid(), signal.SIGABRT)


def asan(site: str, size: int) -> None:
    pid, pc = os.getpid(), 0x55d1a2b3c000 + size
    shadow = "".join(f"  0x0c087fff{0x7fc0 + 16 * i:04x}: " + "fa " * 16 + "\n" for i in range(40))
    say(f"=================================================================\n"
        f"=={pid}==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6040000000{size % 256:02x} "
        f"at pc {pc:#x} bp 0x7fff1a762260 sp 0x7fff1a761a30\n"
        f"WRITE of size {size} at 0x6040000000bc thread T0\n"
        f"    #0 {pc:#x} in __asan_memset (/opt/dev/device+0xa378b) (BuildId: e0abf32de5342b25)\n"
        f"    #1 {pc + 0x100:#x} in fill_packet /home/ci/dev/{site}\n"
        f"    #2 {pc + 0x200:#x} in main /home/ci/dev/src/main.c:9:69\n"
        f"    #3 0x7fd620b39249 in __libc_start_call_main csu/../sysdeps/nptl/libc_start_call_main.h:58:16\n\n"
        f"0x6040000000bc is located 0 bytes to the right of 44-byte region\n"
        f"SUMMARY: AddressSanitizer: heap-buffer-overflow (/opt/dev/device+0xa378b) in __asan_memset\n"
        f"Shadow bytes around the buggy address:\n{shadow}=={pid}==ABORTING\n")
    os._exit(1)


def say(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def die(kind: str, site: str, req: dict) -> None:
    log = os.environ.get("DYING_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"RUST_BACKTRACE={os.environ.get('RUST_BACKTRACE', '')}\n")
    mds = req["max_data_size"]
    if kind == "queues":
        rust_panic("src/rx.rs:88:9" if req["queue"] == "rx" else "src/tx.rs:40:17", mds)
    if kind == "panic":
        rust_panic(site, mds)
    if kind == "assert":
        glibc_assert(site)
    if kind == "asan":
        asan(site, mds)
    raise SystemExit(f"unknown kind {kind!r}")


def main() -> None:
    kind, site = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("op") == "hello":
            print(json.dumps({"ok": True, "protocol": 1, "name": f"dying {kind} {site}".strip()}), flush=True)
        elif req.get("max_data_size", 0) % 2:
            die(kind, site, req)
        else:
            print(json.dumps({"id": req["id"], "ok": False, "error": "NotChecked"}), flush=True)


if __name__ == "__main__":
    main()
