#!/usr/bin/env python3
"""A protocol v1 target that misbehaves on purpose: `hostile.py BEHAVIOUR [ARG]`.

It answers hello and every ordinary case with a plain rejection, and
misbehaves on a case whose max_data_size is TRIGGER (666), so a test can
send good, bad, good and see the harness report the bad one and go on.
It imports nothing from vsock_fuzz: it is a foreign program.

Behaviours (on the trigger case unless said otherwise):
  die-at-start        exits with status 3 before hello, saying why on stderr
  exit                exits with status 7
  abort               abort() (SIGABRT)
  segv                reads address 0 (SIGSEGV)
  panic               a Rust panic message on stderr, exit status 101
  hang                stops reading and answering
  slow-start SECONDS  sleeps before it reads hello
  garbage             prints bytes that are not JSON
  partial             prints half an answer without a newline, then hangs
  huge MIB            prints a line of MIB mebibytes
  wrong-id            answers with another request's id
  silent              reads the request and prints nothing, then goes on reading
  mute                prints nothing at all, not even the hello answer (any case)
  close-stdout        closes stdout and keeps running
  flood-stderr MIB    writes MIB mebibytes to stderr before every answer
  fork                forks a child that keeps the pipes open, then exits
  fail-restart FILE   exits on the trigger; every later start with FILE present dies at start
  eat-memory          allocates 384 MiB (meant to hit rlimit_as)
  burn-cpu            spins forever (meant to hit rlimit_cpu)
  always-exit         exits with status 9 on every case
  flaky               exits with status 11 on max_data_size FLAKY_CRASH,
                      hangs on FLAKY_HANG, answers every other case
"""

import ctypes
import json
import os
import sys
import time

TRIGGER = 666
FLAKY_CRASH = 1000001
FLAKY_HANG = 1000002


def answer(out: dict) -> None:
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def misbehave(mode: str, arg: str, req: dict) -> None:
    if mode in ("exit", "fail-restart"):
        if mode == "fail-restart":
            open(arg, "w").close()
        sys.stderr.write("giving up on this packet\n")
        sys.stderr.flush()
        os._exit(7)
    if mode == "abort":
        os.abort()
    if mode == "segv":
        ctypes.string_at(0)
    if mode == "panic":
        sys.stderr.write("thread 'main' panicked at src/packet.rs:212:31:\n"
                         "range end index 4096 out of range for slice of length 44\n"
                         "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n")
        sys.stderr.flush()
        os._exit(101)
    if mode in ("hang", "partial", "burn-cpu"):
        if mode == "partial":
            sys.stdout.write('{"id": %d, "ok": tr' % req["id"])
            sys.stdout.flush()
        while True:
            if mode != "burn-cpu":
                time.sleep(1)
    if mode == "garbage":
        sys.stdout.buffer.write(b"\x00\xff\xfe not json {{{\n")
        sys.stdout.flush()
        return
    if mode == "huge":
        chunk = b"x" * (1 << 20)
        for _ in range(int(arg)):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()
        return
    if mode == "silent":
        return
    if mode == "wrong-id":
        answer({"id": req["id"] + 1000, "ok": False, "error": "NotChecked", "detail": ""})
        return
    if mode == "close-stdout":
        sys.stdout.close()
        os.close(1)
        while True:
            time.sleep(1)
    if mode == "fork":
        if os.fork() == 0:
            time.sleep(60)  # the child: holds stdin, stdout and stderr open
            os._exit(0)
        os._exit(5)
    if mode == "eat-memory":
        hog = bytearray(384 << 20)
        hog[-1] = 1
        answer({"id": req["id"], "ok": False, "error": "NotChecked", "detail": f"{len(hog)} bytes"})
        return
    raise SystemExit(f"unknown behaviour {mode!r}")


def main() -> None:
    mode = sys.argv[1]
    arg = sys.argv[2] if len(sys.argv) > 2 else ""
    if mode == "die-at-start" or (mode == "fail-restart" and os.path.exists(arg)):
        sys.stderr.write("error: cannot open /dev/vhost-vsock: No such file or directory\n")
        sys.exit(3)
    if mode == "slow-start":
        time.sleep(float(arg))
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("op") == "hello" and mode != "mute":
            answer({"ok": True, "protocol": 1, "name": f"hostile {mode}", "version": "0"})
            continue
        if mode == "mute":
            continue
        if mode == "flood-stderr":
            block = b"E" * (1 << 16)
            for _ in range(int(arg) * 16):
                sys.stderr.buffer.write(block)
            sys.stderr.flush()
        if mode == "always-exit":
            os._exit(9)
        if mode == "flaky" and req.get("max_data_size") == FLAKY_CRASH:
            os._exit(11)
        if mode == "flaky" and req.get("max_data_size") == FLAKY_HANG:
            while True:
                time.sleep(1)
        if req.get("max_data_size") == TRIGGER:
            misbehave(mode, arg, req)
            continue
        answer({"id": req["id"], "ok": False, "error": "NotChecked", "detail": "a hostile target checks nothing"})


if __name__ == "__main__":
    main()
