"""The frames-v1 transport (docs/protocol-extensions.md): length-prefixed binary frames.

Negotiated in `hello`; after the hello answer both directions carry only frames:

    request   le32 n | le32 id | case in the raw binary form (binary.encode)
    answer    le32 n | le32 id | u8 status | ...
      status 1 (accepted): u8 has_header | [44 header bytes] |
                           le32 count, count x (le64 gpa, le64 len)   header slices
                           le32 count, count x (le64 gpa, le64 len)   data slices
      status 0 (rejected): u8 name length | name (ASCII) | detail (UTF-8, the rest)
      status 2 (crashed, only when hello settled crash frames): the report (UTF-8, the rest)

`n` counts the bytes after itself. Both sides of the codec live here so the
client (transport.py) and `serve` cannot drift apart.
"""

from __future__ import annotations

import struct

from ..model.answer import Answer, error_class
from ..model.compiled import load
from ..case.wire import HEADER_SIZE, Header
from .crash_title import crash_title

MODE = "frames-v1"
MAX_FRAME = 16 << 20  # an answer frame announcing more is garbage

_HEAD = struct.Struct("<II")          # n, id
_ANSWER_HEAD = struct.Struct("<IB")   # id, status
_COUNT = struct.Struct("<I")


_compiled = load()


class FrameError(ValueError):
    """A frame that does not follow frames-v1; the message says what is wrong."""


def encode_request(req_id: int, case_bytes: bytes) -> bytes:
    return _HEAD.pack(4 + len(case_bytes), req_id) + case_bytes


def encode_answer(req_id: int, answer: Answer) -> bytes:
    if not answer.ok:
        name = (answer.error or "").encode("ascii", "replace")[:255]
        body = _ANSWER_HEAD.pack(req_id, 0) + bytes((len(name),)) + name + answer.detail.encode()
    else:
        parts = [_ANSWER_HEAD.pack(req_id, 1)]
        if answer.header is None:
            parts.append(b"\0")
        else:
            parts.append(b"\1" + answer.header.pack())
        for slices in (answer.header_slices, answer.data_slices):
            parts.append(_COUNT.pack(len(slices)))
            parts.append(struct.pack(f"<{2 * len(slices)}Q", *(v for s in slices for v in s)))
        body = b"".join(parts)
    return _COUNT.pack(len(body)) + body


REPORTED = "the device panicked (reported in a crash frame)"
REPORT_KEEP = 16 << 10  # characters of a crash frame's report kept (a backtrace's)


def decode_answer(frame: bytes, table: dict | None = None, crashes: bool = False) -> tuple[int, Answer]:
    """(id, answer) from one answer frame without its length prefix; raises FrameError.
    `crashes`: whether hello settled crash frames (status 2), each a crash of the case."""
    if _compiled is not None:  # the compiled core decodes an accepting frame, the usual one
        got = _compiled.answer_frame(frame)
        if got is not None:
            return got
    try:
        req_id, status = _ANSWER_HEAD.unpack_from(frame)
        if status == 0:
            n = frame[5]
            if 6 + n > len(frame):
                raise FrameError("the error name runs past the frame")
            name = frame[6:6 + n].decode("ascii")
            return req_id, Answer.reject(name, error_class(name, table), frame[6 + n:].decode(errors="replace"))
        if status == 2 and crashes:
            report = frame[5:].decode(errors="replace").strip()
            title = crash_title(report, REPORTED)  # from the whole report: its first line names the site
            report = report[-REPORT_KEEP:]
            return req_id, Answer.fault("crash", f"{REPORTED}; stderr: {report}" if report else REPORTED, title)
        if status != 1:
            raise FrameError(f"status byte {status}, not 0 or 1" + (" (crash frames were not settled in hello)"
                                                                     if status == 2 else ""))
        pos = 6
        header = None
        if frame[5]:
            header = Header.unpack(frame[pos:pos + HEADER_SIZE])
            pos += HEADER_SIZE
        lists = []
        for _ in range(2):
            (count,) = _COUNT.unpack_from(frame, pos)
            pos += 4
            flat = struct.unpack_from(f"<{2 * count}Q", frame, pos)
            pos += 16 * count
            lists.append(tuple(zip(flat[::2], flat[1::2])))
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise FrameError(f"malformed answer frame ({e})") from None
    if pos != len(frame):
        raise FrameError(f"{len(frame) - pos} bytes left over after the answer")
    return req_id, Answer(True, header, lists[0], lists[1])
