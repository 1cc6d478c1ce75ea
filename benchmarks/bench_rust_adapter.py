"""Cases/s of a Rust adapter (adapters/rust) under a bare client: no oracles, no
fuzzer, only the requests and the answers.

    python benchmarks/bench_rust_adapter.py [--target PATH] [--seconds S]

The seed cases (corpus/target) are sent over protocol v1 (JSON lines) and over
frames-v1, one at a time (send, wait for the answer) and pipelined (64 in
flight). The requests are encoded before the clock starts, so the figures are
the target plus the pipes plus reading the answers (split on newlines or
frame lengths, not decoded). Default target: the current rust-vmm adapter,
built with `make adapters`. Figures are printed, never asserted; best of three.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:
    from vsock_fuzz.case.binary import decode, encode  # noqa: E402
except ImportError:  # the layout before vsock_fuzz/case/
    from vsock_fuzz.binary import decode, encode  # noqa: E402

DEFAULT = ROOT / "adapters" / "rust" / "target" / "release" / "vsock-target-rust-vmm"
WINDOW = 64


class Client:
    def __init__(self, path: Path, frames: bool):
        self.p = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.out = self.p.stdout
        self.buf = b""
        hello = {"op": "hello", "protocol": 1, **({"modes": ["frames-v1"]} if frames else {})}
        self.p.stdin.write(json.dumps(hello).encode() + b"\n")
        answer = json.loads(self._line())
        assert answer["ok"] and (answer.get("mode") == "frames-v1") == frames, answer
        self.frames = frames

    def _fill(self):
        chunk = os.read(self.out.fileno(), 1 << 16)
        if not chunk:
            raise EOFError("the target exited")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def _frame(self) -> bytes:
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack_from("<I", self.buf)[0]:
            self._fill()
        n = 4 + struct.unpack_from("<I", self.buf)[0]
        frame, self.buf = self.buf[:n], self.buf[n:]
        return frame

    def answer(self) -> bytes:
        return self._frame() if self.frames else self._line()

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def requests(cases, frames: bool) -> list[bytes]:
    out = []
    for i, c in enumerate(cases):
        if frames:
            body = encode(c)
            out.append(struct.pack("<II", 4 + len(body), i) + body)
        else:
            out.append(json.dumps(c.to_request(i)).encode() + b"\n")
    return out


def rate(path: Path, reqs: list[bytes], frames: bool, pipelined: bool, seconds: float) -> float:
    cl = Client(path, frames)
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if pipelined:
            for k in range(0, len(reqs), WINDOW):
                batch = reqs[k:k + WINDOW]
                cl.p.stdin.write(b"".join(batch))
                for _ in batch:
                    cl.answer()
                done += len(batch)
        else:
            for r in reqs:
                cl.p.stdin.write(r)
                cl.answer()
                done += 1
    elapsed = time.perf_counter() - start
    cl.close()
    return done / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=Path, default=DEFAULT)
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    if not a.target.exists():
        sys.exit(f"{a.target} is missing: run `make adapters` first")
    cases = [decode(p.read_bytes()) for p in sorted((ROOT / "corpus" / "target").iterdir()) if p.is_file()]
    print(f"{a.target.name}: {len(cases)} seed cases from corpus/target, best of 3 runs of {a.seconds:g} s")
    print(f"{'transport':<12} {'one at a time':>16} {'pipelined (' + str(WINDOW) + ')':>18}")
    for frames in (False, True):
        reqs = requests(cases, frames)
        one = max(rate(a.target, reqs, frames, False, a.seconds) for _ in range(3))
        many = max(rate(a.target, reqs, frames, True, a.seconds) for _ in range(3))
        print(f"{'frames-v1' if frames else 'v1':<12} {one:>10,.0f} cases/s {many:>11,.0f} cases/s")


if __name__ == "__main__":
    main()
