"""`vsock-fuzz serve`: the model as a protocol v1 target on stdin/stdout."""

from __future__ import annotations

import json
import sys

from . import __version__
from .case import Case, CaseError
from .packet import parse
from .targets import PROTOCOL


def handle(line: bytes | str, profile: str) -> dict:
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
        out.update(ok=True, protocol=PROTOCOL, name=f"vsock-fuzz reference ({profile})", version=__version__)
        return out
    if op != "parse":
        out.update(ok=False, error="BadRequest", detail=f"unknown op {op!r}")
        return out
    try:
        case = Case.from_request(req)
    except CaseError as e:
        out.update(ok=False, error="BadRequest", detail=str(e))
        return out
    return parse(case, profile).to_json(rid)


def serve(profile: str = "spec", stdin=None, stdout=None) -> int:
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout
    for line in stdin:
        if not line.strip():
            continue
        stdout.write(json.dumps(handle(line, profile), separators=(",", ":")) + "\n")
        stdout.flush()
    return 0
