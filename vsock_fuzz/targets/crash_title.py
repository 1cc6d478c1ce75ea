"""The title of a target that died: the site its last words name, so one bug is one entry.

How a process ended says little: every Rust panic exits with status 101, every C assert
aborts. The runtimes name the site on stderr, and the title is that site, without what
varies between runs of one build (pids, thread ids, addresses, the numbers in a message),
so one site gives one title and two sites give two:

  Rust panic     `thread 'main' (12345) panicked at src/lib.rs:10:5:` then the message on
                 the next line (before Rust 1.73: `thread 'main' panicked at 'msg',
                 src/lib.rs:10:5`)                      -> `panicked at src/lib.rs:10:5: msg`
  glibc assert   `prog: pkt.c:88: parse: Assertion `n >= 44' failed.`
                                                        -> the same without `prog: `
  sanitizers     `==123==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x...` then
                 frames `#1 0x... in fill pkt.c:6:28`   -> `heap-buffer-overflow in fill pkt.c:6:28`
                 (the first frame outside the sanitizer runtime, the allocator and libc)
  UBSan          `pkt.c:11:62: runtime error: signed integer overflow: ...`
                                                        -> `runtime error: signed integer overflow at pkt.c:11:62`
  anything else  how it ended and the last line on stderr: `killed by SIGSEGV`

When several reports are in the tail (a recoverable UBSan error, then the crash), the last
one is what killed the target. Columns stay: they do not vary between runs of one build and
tell apart two sites on one line (`v[i] + w[j]`). Absolute paths keep their last parts, so
a site is titled alike on a laptop and in CI.

Pure and stdlib only: called when a target died, never on the per-case path.
"""

from __future__ import annotations

import re

MAX_TITLE = 160
MAX_MESSAGE = 100

# Rust >= 1.73; newer releases put the thread id in parentheses after the name.
_PANIC = re.compile(r"^thread '[^'\n]*'(?: \(\d+\))? panicked at (\S+:\d+(?::\d+)?):$(?:\n(.*))?", re.M)
# Rust < 1.73: the message (which may span lines) quoted before the location.
_OLD_PANIC = re.compile(r"^thread '[^'\n]*'(?: \(\d+\))? panicked at '((?:.|\n)*?)', (\S+:\d+(?::\d+)?)$", re.M)
# glibc's assert; the program name before the file is dropped.
_ASSERT = re.compile(r"(?:^|\s)([^\s:]+):(\d+): (.+?): Assertion `(.*)' failed\.$", re.M)
# musl's assert says the same in another order.
_MUSL_ASSERT = re.compile(r"^Assertion failed: (.*) \(([^\s:]+): (.+?): (\d+)\)$", re.M)
# AddressSanitizer, LeakSanitizer, UBSan's deadly signals, ...: `==pid==ERROR: <Name>Sanitizer: <kind> ...`.
_SANITIZER = re.compile(r"^(?:==\d+==)?ERROR: \w*Sanitizer: (.*)$", re.M)
_FRAME = re.compile(r"^\s*#\d+\s+0x[0-9a-fA-F]+\s+(.*)$")
_BUILD_ID = re.compile(r"\s*\(BuildId: [0-9a-fA-F]+\)$")
_FRAME_PLACE = re.compile(r"\s*(\([^()\s]*\+0x[0-9a-fA-F]+\)|\S+:\d+(?::\d+)?)$")
# UBSan's report of undefined behaviour it recovers from or halts on.
_UBSAN = re.compile(r"^(\S+:\d+(?::\d+)?): runtime error: (.*)$", re.M)

# Frames that are the sanitizer runtime, the allocator or libc rather than the bug.
_RUNTIME_FUNCTION = re.compile(
    r"^(?:__asan|__interceptor|___interceptor|__sanitizer|__ubsan|__lsan|__msan|__tsan|__hwasan|__libc_|__GI_"
    r"|__assert|_start$|abort$|raise$|gsignal$|__pthread_kill|pthread_kill"
    r"|(?:malloc|calloc|realloc|reallocarray|free|posix_memalign|aligned_alloc|memalign|valloc"
    r"|operator new|operator delete)\b)")
_RUNTIME_PLACE = ("compiler-rt/", "libclang_rt", "libasan", "libubsan", "sanitizer_common", "libc.so", "libc-",
                  "libstdc++", "libpthread", "csu/", "sysdeps/")

_HEX = re.compile(r"0x[0-9a-fA-F]+")
_NUMBER = re.compile(r"\b\d+\b")
# Where a Cargo dependency or the standard library lives on this machine, up to the crate.
_CRATE_ROOT = re.compile(r"^.*/(?:registry/src/[^/]+|git/checkouts/[^/]+/[^/]+|rustc/[0-9a-f]+)/")


def crash_title(stderr: str, ending: str) -> str:
    """The title of a target that died with `stderr` as the tail of what it wrote there;
    `ending` says how it ended (`exited with status 101`, `killed by SIGSEGV`; only what is
    before a colon is used: a garbage answer's reason quotes the garbage)."""
    found = [t for t in (_rust_panic(stderr), _old_rust_panic(stderr), _glibc_assert(stderr),
                         _musl_assert(stderr), _sanitizer(stderr), _ubsan(stderr)) if t]
    if found:
        return max(found)[1][:MAX_TITLE]  # the report that starts last
    head = ending.split(":", 1)[0].strip()
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    return (f"{head}: {_scrub(last)}" if last else head)[:MAX_TITLE]


def _last(pattern: re.Pattern, text: str):
    m = None
    for m in pattern.finditer(text):
        pass
    return m


def _rust_panic(text: str):
    m = _last(_PANIC, text)
    if m:
        message = _scrub(m.group(2) or "")
        return m.start(), f"panicked at {_short_path(m.group(1))}" + (f": {message}" if message else "")


def _old_rust_panic(text: str):
    m = _last(_OLD_PANIC, text)
    if m:
        return m.start(), f"panicked at {_short_path(m.group(2))}: {_scrub(m.group(1))}"


def _glibc_assert(text: str):
    m = _last(_ASSERT, text)
    if m:
        file, line, function, expr = m.groups()
        return m.start(), f"{_short_path(file)}:{line}: {function}: Assertion `{expr}' failed."


def _musl_assert(text: str):
    m = _last(_MUSL_ASSERT, text)
    if m:
        expr, file, function, line = m.groups()
        return m.start(), f"{_short_path(file)}:{line}: {function}: Assertion `{expr}' failed."


def _sanitizer(text: str):
    m = _last(_SANITIZER, text)
    if m:
        site = _first_own_frame(text[m.end():].splitlines())
        kind = _sanitizer_kind(m.group(1))
        return m.start(), f"{kind} in {site}" if site else kind


def _sanitizer_kind(words: str) -> str:
    """`heap-buffer-overflow on address 0x602... at pc ...` -> `heap-buffer-overflow`: the words
    before the first address, number or parenthesis, without a dangling `on address`."""
    kept = []
    for w in words.split():
        if w.startswith("(") or any(c.isdigit() for c in w):
            break
        if w.endswith(":"):
            kept.append(w[:-1])
            break
        kept.append(w)
    kind = " ".join(kept)
    for tail in (" on address", " on"):
        kind = kind.removesuffix(tail)
    return kind or "report"


def _first_own_frame(lines) -> str:
    """`func place` of the first frame of the report's first stack that is not the runtime's."""
    started = False
    for line in lines:
        m = _FRAME.match(line)
        if not m:
            if started and not line.strip():
                break  # the first stack (where it happened) ends at a blank line
            continue
        started = True
        function, place = _frame_parts(m.group(1))
        if _RUNTIME_FUNCTION.match(function) or any(p in place for p in _RUNTIME_PLACE):
            continue
        return f"{function} {_short_path(place)}".strip()
    return ""


def _frame_parts(rest: str) -> tuple[str, str]:
    """`in fill /src/a.c:6:28` -> (fill, /src/a.c:6:28); `in f (/bin/dev+0x1f)` -> (f, dev+0x1f)."""
    rest = _BUILD_ID.sub("", rest).strip()
    m = _FRAME_PLACE.search(rest)
    place = m.group(1) if m else ""
    function = (rest[:m.start()] if m else rest).strip()
    if place.startswith("("):  # module+offset: no source line, but the same for one build
        place = place[1:-1].rsplit("/", 1)[-1]
    return function.removeprefix("in ").strip(), place


def _ubsan(text: str):
    m = _last(_UBSAN, text)
    if m:
        what = _scrub(m.group(2).split(": ", 1)[0])
        return m.start(), f"runtime error: {what} at {_short_path(m.group(1))}"


def _short_path(place: str) -> str:
    """A source place without this machine's part of the path: a Cargo crate or the standard
    library from its own root, another absolute path by its last three parts."""
    place = place.removeprefix("./")
    if not place.startswith("/"):
        return place
    short = _CRATE_ROOT.sub("", place)
    return short if short != place else "/".join(place.split("/")[-3:])


def _scrub(message: str) -> str:
    """A message's first line without what varies from run to run: addresses and numbers."""
    first = message.strip().split("\n", 1)[0].strip()
    return _NUMBER.sub("N", _HEX.sub("0xN", first))[:MAX_MESSAGE]
