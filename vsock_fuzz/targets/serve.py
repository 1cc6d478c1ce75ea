"""Serve a parse function as a protocol v1 target on stdin/stdout.

`vsock-fuzz serve` serves the model; any other parse function (the bug zoo,
a user's Python parser) is served the same way with `serve(parse_fn, name)`.
A hello offering "frames-v1" switches to binary frames
(docs/protocol-extensions.md, codec in frames.py).
"""

from __future__ import annotations

import json
import sys
from functools import partial

from .. import __version__
from ..model.answer import Answer
from ..case.binary import RAW, decode
from ..case.value import Case, CaseError
from .frames import MODE as FRAMES, encode_answer
from ..model.packet import parse
from .base import PROTOCOL

MODES = (FRAMES,)
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def handle(line: bytes | str, parse_fn, name: str, version: str = __version__, modes=(),
           device: dict | None = None) -> dict:
    """The answer to one request line; a malformed line gets a BadRequest answer.

    A hello offering one of `modes` is answered with "mode": the first offered;
    `device`, when given, is the hello's `device` object (docs/protocol.md).
    """
    try:
        req = json.loads(line)
    except ValueError as e:
        return {"ok": False, "error": "BadRequest", "detail": f"not JSON: {e}"}
    if not isinstance(req, dict):
        return {"ok": False, "error": "BadRequest", "detail": "a request is a JSON object"}
    rid = req.get("id")
    out = {} if rid is None else {"id": rid}
    op = req.get("op")
    if op == "hello":
        out.update(ok=True, protocol=PROTOCOL, name=name, version=version)
        if device is not None:
            out["device"] = device
        offered = req.get("modes")
        if isinstance(offered, list):
            mode = next((m for m in offered if m in modes), None)
            if mode:
                out["mode"] = mode
        return out
    if op != "parse":
        out.update(ok=False, error="BadRequest", detail=f"unknown op {op!r}")
        return out
    try:
        case = Case.from_request(req)
    except CaseError as e:
        out.update(ok=False, error="BadRequest", detail=str(e))
        return out
    answer: Answer = parse_fn(case)
    return answer.to_json(rid)


def serve(parse_fn=None, name: str | None = None, *, profile: str = "spec", version: str = __version__,
          stdin=None, stdout=None, modes=MODES, device: dict | None = None) -> int:
    """Answer requests until stdin closes. Without `parse_fn`, serve the model under `profile`."""
    if parse_fn is None:
        parse_fn = partial(parse, profile=profile)
        name = name or f"vsock-fuzz reference ({profile})"
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout
    for line in stdin:
        if not line.strip():
            continue
        out = handle(line, parse_fn, name or "vsock-fuzz target", version, modes, device)
        stdout.write(_dumps(out) + "\n")
        stdout.flush()
        if out.get("mode") == FRAMES:
            return serve_frames(parse_fn, stdin, getattr(stdout, "buffer", stdout))
    return 0


def serve_frames(parse_fn, stdin, stdout) -> int:
    """Answer frames-v1 requests until stdin closes; answers are flushed before each read."""
    read = getattr(stdin, "read1", stdin.read)
    buf = bytearray()
    while True:
        pos, out = 0, []
        while len(buf) - pos >= 4:
            n = int.from_bytes(buf[pos:pos + 4], "little")
            if len(buf) - pos - 4 < n:
                break
            out.append(_answer_frame(bytes(buf[pos + 4:pos + 4 + n]), parse_fn))
            pos += 4 + n
        del buf[:pos]
        if out:
            stdout.write(b"".join(out))
        stdout.flush()
        chunk = read(1 << 16)
        if not chunk:
            return 0
        buf += chunk


def _answer_frame(frame: bytes, parse_fn) -> bytes:
    req_id = int.from_bytes(frame[:4], "little")
    case = frame[4:]
    if len(frame) < 4 or len(case) < 2 or not case[1] & RAW:
        return encode_answer(req_id, Answer.reject("BadRequest", "unknown",
                                                   "a frame carries le32 id and a case in the raw binary form"))
    return encode_answer(req_id, parse_fn(decode(case)))
