"""The traffic with a `cmd:` target: requests out, answers in, over protocol v1 lines or
frames-v1 (frames.py), pipelined for parse_many.

Nothing here kills or restarts the target: a read or write that fails, times out or
meets garbage ends in a string saying why, and the caller (CommandTarget) decides.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from selectors import EVENT_WRITE

from ..case.binary import encode
from ..case.value import Case
from ..model.answer import Answer
from ..model.compiled import load
from .frames import MAX_FRAME, MODE as FRAMES, FrameError, decode_answer, encode_request
from .process import Child

MAX_LINE = 16 << 20        # an answer line longer than this is garbage
READ_SIZE = 1 << 16
WINDOW = 64                # cases in flight at once in parse_many
SPIN = 50e-6               # seconds of polling for an answer before sleeping on it


_compiled = load()


class _Garbage(Exception):
    """An answer that cannot be one; the message says what the target printed."""


class Pipes:
    """The bytes to and from the running target, attached anew at every start.

    Reads go to a buffer that take_line and take_frame cut answers from; a
    write to a full pipe reads meanwhile, as the target may be blocked
    writing answers nobody reads.
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._buf = bytearray()
        self._scan = 0            # bytes of _buf already searched for a newline
        self._child: Child | None = None
        # The child's descriptors and selector, copied out of it for the read loop.
        self._in = self._out = self._pidfd = -1
        self._sel = None

    def attach(self, child: Child) -> None:
        self._child = child
        self._in, self._out, self._pidfd, self._sel = child.stdin, child.stdout, child.pidfd, child.sel
        self._buf.clear()
        self._scan = 0

    def send(self, data: bytes, deadline: float):
        """Write all of `data`, reading answers meanwhile so neither side blocks.

        None when written, else a string saying why not (broken pipe, or the
        target stopped reading until `deadline`).
        """
        fd = self._in
        view = memoryview(data)
        registered = False
        try:
            while True:
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:
                    pass
                except OSError:
                    return self._child.exit_reason("closed its stdin")
                if not view:
                    return None
                # Pipe full: the target may be waiting for us to read its answers.
                if not registered:
                    self._sel.register(fd, EVENT_WRITE)
                    registered = True
                why = self.wait(deadline)
                if why:
                    return why
        finally:
            if registered and self._child.sel is not None:  # not if the target was killed meanwhile
                self._sel.unregister(fd)

    def take_line(self):
        """A complete line from the buffer, a string saying why it is garbage, or None (need more)."""
        buf = self._buf
        nl = buf.find(b"\n", self._scan)
        if nl < 0:
            self._scan = len(buf)
            if len(buf) > MAX_LINE:
                return f"printed a line longer than {MAX_LINE} bytes"
            return None
        line = bytes(buf[:nl])
        del buf[:nl + 1]
        self._scan = 0
        return line

    def take_frame(self):
        """A complete frame from the buffer, a string saying why it is garbage, or None (need more)."""
        buf = self._buf
        if len(buf) < 4:
            return None
        n = int.from_bytes(buf[:4], "little")
        if n > MAX_FRAME:
            return f"announced a frame of {n} bytes (garbage on stdout?)"
        if len(buf) < 4 + n:
            return None
        frame = bytes(buf[4:4 + n])
        del buf[:4 + n]
        return frame

    def wait(self, deadline: float):
        """Read more output before `deadline`; a string saying why none will come, else None."""
        left = deadline - time.monotonic()
        if left <= 0:
            if self._child.popen.poll() is not None:
                return self._child.exit_reason("stopped")
            return f"no answer within {self.timeout:g}s"
        return self._read_some(left)

    def _read_some(self, timeout: float):
        """Wait up to `timeout` for output and append it; a string if the target is gone."""
        fd = self._out
        # A native target answers in microseconds: polling for SPIN seconds
        # first saves the sleep and wake-up (about twice the cases/s one at a time).
        # The compiled core polls with the GIL released, and without an exception per try.
        if _compiled is not None:
            chunk = _compiled.read_spin(fd, SPIN, READ_SIZE)
        else:
            spin_end = time.perf_counter() + SPIN
            while True:
                try:
                    chunk = os.read(fd, READ_SIZE)
                    break
                except BlockingIOError:
                    if time.perf_counter() >= spin_end:
                        chunk = None
                        break
        if chunk:
            self._buf += chunk
            return None
        if chunk is not None:
            return self._child.exit_reason("closed its stdout")
        ready = self._sel.select(timeout)
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            if any(key.fd == self._pidfd for key, _ in ready):
                return self._child.exit_reason("stopped")
            return None
        if not chunk:
            return self._child.exit_reason("closed its stdout")
        self._buf += chunk
        return None


class Channel(Pipes):
    """Requests and answers: hello on v1 lines, then cases on the transport it settled on.

    Every life begins on v1 lines; the caller sets `mode` from the hello
    answer. Request ids run on across restarts, so an answer can never be
    mistaken for one to a case of an earlier life.
    """

    def __init__(self, timeout: float, error_classes: dict | None):
        super().__init__(timeout)
        self.error_classes = error_classes
        self.mode = "v1"
        self.crash_frames = False  # settled in hello (docs/protocol-extensions.md, "Crash frames")
        self._next_id = 0
        self._posted: deque[int] = deque()  # ids of requests post() sent ahead of their exchange

    def attach(self, child: Child) -> None:
        super().attach(child)
        self.mode = "v1"
        self.crash_frames = False
        self._posted = deque()

    def post(self, case) -> None:
        """Send `case` now, ahead of the exchange that reads its answer (whose `cases` must begin
        with it): the target works on it while the caller does something else. A write that
        fails is left to that exchange, which sends the case again and meets the fault."""
        req_id, data = self._request(case)
        if self.send(data, time.monotonic() + self.timeout) is None:
            self._posted.append(req_id)

    def _request(self, case) -> tuple[int, bytes]:
        """`case`'s request on the settled transport, with the next id."""
        self._next_id = req_id = (self._next_id + 1) & 0xFFFFFFFF
        return req_id, encode_request(req_id, _raw(case)) if self.mode == FRAMES else case.line(req_id)

    def hello(self, request: dict, timeout: float):
        """The answer to a hello `request` as a dict, or a string saying why there is none."""
        deadline = time.monotonic() + timeout
        why = self.send(json.dumps(request).encode() + b"\n", deadline)
        while not why:
            got = self.take_line()
            if got is not None:
                break
            why = self.wait(deadline)
        else:
            if why.startswith("no answer"):
                why = f"no answer to hello within the start timeout ({timeout:g}s)"
            return why
        if isinstance(got, str):
            return got
        try:
            reply = json.loads(got)
        except ValueError:
            return f"printed a line that is not JSON: {got[:200]!r}"
        return reply if isinstance(reply, dict) else f"printed a line that is not a JSON object: {got[:200]!r}"

    def exchange(self, cases: list, answers: list):
        """Send cases[len(answers):] (but those post() sent already), up to WINDOW in flight,
        and append their answers.

        None when every case is answered; else the fault of the first case
        without an answer: ("hang", why) if it timed out, ("crash", why) if
        the target ended or printed garbage. The target is then unusable.
        """
        frames = self.mode == FRAMES
        take = self.take_frame if frames else self.take_line
        decode = (_decode_crash_frame if self.crash_frames else _decode_frame) if frames else _decode_line
        error_classes = self.error_classes
        ids, self._posted = self._posted, deque()
        sent = len(answers) + len(ids)
        deadline = time.monotonic() + self.timeout
        broken = False
        while len(answers) < len(cases):
            if not broken and sent < len(cases) and sent - len(answers) < WINDOW // 2 + 1:
                chunk = []
                for case in cases[sent:len(answers) + WINDOW]:
                    req_id, data = self._request(case)
                    ids.append(req_id)
                    chunk.append(data)
                    sent += 1
                # On a broken pipe the answers to earlier cases may still be
                # waiting unread: read them; the first case without one faulted.
                broken = self.send(b"".join(chunk), deadline) is not None
            got = take()
            if got is None:
                why = self.wait(deadline)
                if why:
                    return ("hang" if why.startswith("no answer") else "crash"), why
                continue
            if isinstance(got, str):
                return "crash", got
            try:
                answers.append(decode(got, ids.popleft(), error_classes))
            except _Garbage as e:
                return "crash", str(e)
            deadline = time.monotonic() + self.timeout
        return None


def _raw(case) -> bytes:
    """A frames-v1 request's body, the raw binary form; the compiled core's cases (model.compiled)
    encode themselves, as they write their own v1 line (both have `line`)."""
    return encode(case) if isinstance(case, Case) else case.raw()


def _decode_line(got: bytes, req_id: int, error_classes: dict | None) -> Answer:
    try:
        reply = json.loads(got)
    except ValueError:
        raise _Garbage(f"printed a line that is not JSON: {got[:200]!r}") from None
    if not isinstance(reply, dict):
        raise _Garbage(f"printed a line that is not a JSON object: {got[:200]!r}")
    rid = reply.get("id")
    try:
        answer = Answer.from_json(reply, error_classes)
    except (ValueError, KeyError, TypeError) as e:
        raise _Garbage(f"printed an invalid answer ({e}): {got[:200]!r}") from None
    if rid != req_id:
        raise _Garbage(f"answered id {rid!r} to request {req_id}")
    return answer


def _decode_crash_frame(got: bytes, req_id: int, error_classes: dict | None) -> Answer:
    return _decode_frame(got, req_id, error_classes, True)


def _decode_frame(got: bytes, req_id: int, error_classes: dict | None, crashes: bool = False) -> Answer:
    try:
        rid, answer = decode_answer(got, error_classes, crashes)
    except FrameError as e:
        raise _Garbage(f"printed an invalid frame: {e}") from None
    if rid != req_id:
        raise _Garbage(f"answered id {rid!r} to request {req_id}")
    return answer
