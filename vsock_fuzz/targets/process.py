"""One life of a `cmd:` target's process: starting it, its stderr, how it ended, killing it."""

from __future__ import annotations

import _thread
import ctypes
import os
import resource
import select
import shutil
import signal
import subprocess
import threading
from collections import deque
from selectors import EVENT_READ, DefaultSelector

from .base import TargetError

STDERR_KEEP = 64 << 10     # bytes of stderr kept for a report
PR_SET_PDEATHSIG = 1       # linux/prctl.h


def libc_prctl():
    """libc's prctl, for the child to ask for SIGKILL when its parent dies; looked up in the
    parent, as the child should do no more than call it. None where there is no prctl."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_SETPRIV: list = []  # [argv prefix or None], once per process: setpriv_prefix's answer


def setpriv_prefix() -> list[str] | None:
    """util-linux's `setpriv --pdeathsig KILL --`, if it works here: the parent-death signal
    asked for by a program exec'd in between, so the target is started by vfork (posix
    spawn) rather than fork plus a Python preexec_fn. A fork copies the worker's page tables
    and runs Python in the child: 4-20 ms per start, growing with the worker's memory, which
    a target crashing on most cases pays on every case; setpriv costs about 1 ms."""
    if not _SETPRIV:
        path = shutil.which("setpriv")
        ok = False
        if path:
            try:
                ok = subprocess.run([path, "--pdeathsig", "KILL", "--", "true"], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5).returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
        _SETPRIV.append([path, "--pdeathsig", "KILL", "--"] if ok else None)
    return _SETPRIV[0]


class StderrTail:
    """The last STDERR_KEEP bytes of a target's stderr, drained by a thread of its own so a
    flooding target cannot block on a full pipe. Outlives the process, so the report of a
    fault can quote the target's last words after it was killed."""

    def __init__(self):
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._lock = threading.Lock()
        self._done = threading.Event()

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._size = 0

    def drain(self, pipe) -> None:
        """Read `pipe` to its end in a thread of its own, which, like a daemon thread, does not
        hold up the interpreter's exit. A bare _thread: threading.Thread.start waits for the
        thread to run, half a millisecond per process start when the GIL is busy."""
        self._done = done = threading.Event()
        _thread.start_new_thread(self._drain, (pipe, done))

    def _drain(self, pipe, done: threading.Event) -> None:
        try:
            for chunk in iter(lambda: pipe.read1(1 << 16), b""):
                with self._lock:
                    self._chunks.append(chunk)
                    self._size += len(chunk)
                    while self._size > STDERR_KEEP and len(self._chunks) > 1:
                        self._size -= len(self._chunks.popleft())
        except (OSError, ValueError):
            pass
        finally:
            pipe.close()
            done.set()

    def text(self) -> str:
        with self._lock:
            return b"".join(self._chunks)[-STDERR_KEEP:].decode(errors="replace")

    def note(self) -> str:
        """The tail as a suffix for a fault's detail; empty if the target said nothing."""
        # Let the drain thread catch the last words of the target, which is
        # dead by now (unless something outside its group holds stderr).
        self._done.wait(0.1)
        tail = self.text().strip()
        if not tail:
            return ""
        return "; stderr: " + tail[-2000:]


class Child:
    """A started target process, in a new session so the whole process group (children
    holding our pipes too) is killed with it.

    `stdin` and `stdout` are the pipes' file descriptors, non-blocking; `sel` waits on
    stdout and, where there are pidfds, on the process's exit. `prctl` (libc_prctl())
    asks for the parent-death signal; `rlimits` are (resource name, value) pairs;
    `pass_fds` and `env` are subprocess's (the coverage region's memfd and its name).
    """

    def __init__(self, argv: list[str], stderr: StderrTail, *, rlimits=(), prctl=None, pass_fds=(), env=None):
        self._rlimits = rlimits
        self._prctl = prctl
        stderr.clear()
        self._parent = os.getpid()
        if prctl is not None and not rlimits and shutil.which(argv[0]) and (prefix := setpriv_prefix()):
            # The death signal without a fork (setpriv_prefix). A program that cannot be found
            # is left to the preexec path below, whose OSError names it as before.
            argv, self._prctl = [*prefix, *argv], None
        try:
            self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, start_new_session=True,
                                          preexec_fn=self._in_child if rlimits or self._prctl else None,
                                          pass_fds=pass_fds, env=env)
        except OSError as e:
            raise TargetError(f"cannot start {argv[0]!r}: {e.strerror or e}") from None
        self.stdin = self.popen.stdin.fileno()
        self.stdout = self.popen.stdout.fileno()
        os.set_blocking(self.stdout, False)
        os.set_blocking(self.stdin, False)
        self.sel: DefaultSelector | None = DefaultSelector()
        self.sel.register(self.popen.stdout, EVENT_READ)
        try:  # readable when the target exits, even if a child keeps stdout open
            self.pidfd = os.pidfd_open(self.popen.pid)
            self.sel.register(self.pidfd, EVENT_READ)
        except (AttributeError, OSError):
            self.pidfd = -1
        stderr.drain(self.popen.stderr)

    def _in_child(self) -> None:
        """Runs in the child before exec: the parent-death signal, then the limits."""
        if self._prctl is not None:
            self._prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != self._parent:  # the parent died before the request: no signal comes
                os._exit(1)
        for res, v in self._rlimits:
            num = getattr(resource, res)
            # CPU: the soft limit sends SIGXCPU, the hard one a second later SIGKILL.
            resource.setrlimit(num, (v, v + 1 if res == "RLIMIT_CPU" else v))

    def exit_reason(self, what: str) -> str:
        """How the target ended: its exit status or signal, or `what` if it still runs."""
        code = self.popen.poll()
        if code is None and self.pidfd >= 0:
            # Its stdout closes a moment before it can be reaped: wait on the pidfd rather
            # than in Popen.wait's loop of sleeps (the first is a millisecond).
            ready = select.poll()
            ready.register(self.pidfd, select.POLLIN)
            if not ready.poll(500):
                return f"{what} but is still running"
            code = self.popen.wait()
        elif code is None:
            try:
                code = self.popen.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                return f"{what} but is still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"

    def close(self) -> None:
        """Let the target exit on its own (it does when its stdin closes), then kill what is left."""
        try:
            self.popen.stdin.close()
            self.popen.wait(timeout=1.0)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # the whole group: children holding pipes too
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()
        for f in (self.popen.stdin, self.popen.stdout):
            try:
                f.close()
            except OSError:
                pass
        if self.sel is not None:
            self.sel.close()
            self.sel = None
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
