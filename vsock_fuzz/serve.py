"""Serve a parse function as a protocol v1 target on stdin/stdout.

`vsock-fuzz serve` serves the model; any other parse function (the bug zoo,
a user's Python parser) is served the same way with `serve(parse_fn, name)`.
"""

from __future__ import annotations

import json
import sys
from functools import partial

from . import __version__
from .answer import Answer
from .case import Case, CaseError
from .packet import parse
from .targets import PROTOCOL


def handle(line: bytes | str, parse_fn, name: str, version: str = __version__) -> dict:
    """The answer to one request line; a malformed line gets a BadRequest answer."""
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
          stdin=None, stdout=None) -> int:
    """Answer requests until stdin closes. Without `parse_fn`, serve the model under `profile`."""
    if parse_fn is None:
        parse_fn = partial(parse, profile=profile)
        name = name or f"vsock-fuzz reference ({profile})"
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout
    for line in stdin:
        if not line.strip():
            continue
        stdout.write(json.dumps(handle(line, parse_fn, name or "vsock-fuzz target", version), separators=(",", ":")) + "\n")
        stdout.flush()
    return 0
