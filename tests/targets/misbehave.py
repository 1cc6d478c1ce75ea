"""A protocol v1 target that serves the model but misbehaves on one kind of case.

    python misbehave.py MODE

Cases with max_data_size == 666 trigger MODE: abort (SIGABRT), exit (status 3),
panic (a Rust-style panic message, status 101), hang, garbage (a line that is
not JSON), wrong-id, bad-answer (JSON that is not a valid answer). Every
other request is answered by the model, so the harness can check recovery.
"""

import json
import os
import sys
import time

from vsock_fuzz.model.packet import parse
from vsock_fuzz.targets.serve import handle

TRIGGER = 666


def misbehave(mode: str, req: dict) -> None:
    if mode == "abort":
        sys.stderr.write("about to abort\n")
        sys.stderr.flush()
        os.abort()
    if mode == "exit":
        sys.stderr.write("bye\n")
        sys.stderr.flush()
        sys.exit(3)
    if mode == "panic":
        sys.stderr.write("thread 'main' panicked at src/packet.rs:42:9:\n"
                         "index out of bounds: the len is 44 but the index is 44\n"
                         "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n")
        sys.stderr.flush()
        sys.exit(101)
    if mode == "hang":
        time.sleep(60)
    if mode == "garbage":
        print("this is not an answer", flush=True)
        return
    if mode == "wrong-id":
        print(json.dumps({"id": req["id"] + 1000, "ok": False, "error": "X"}), flush=True)
        return
    if mode == "bad-answer":
        print(json.dumps({"id": req["id"], "ok": True, "header_slices": [[1, -4]], "data_slices": []}), flush=True)
        return
    raise SystemExit(f"unknown mode {mode}")


def main() -> None:
    mode = sys.argv[1]
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("op") == "parse" and req.get("max_data_size") == TRIGGER:
            misbehave(mode, req)
            continue
        print(json.dumps(handle(line, parse, "misbehave")), flush=True)


if __name__ == "__main__":
    main()
