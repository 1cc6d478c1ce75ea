"""Corpus files: reading cases from disk and writing findings atomically.

A case file is one of
  - binary (any name not ending in `.json`): the compact form of `binary.py`,
    exactly the bytes a libFuzzer/atheris harness ran;
  - JSON (`*.json`): a parse request of docs/protocol.md, with or without
    `id` and `op`, optionally with `"version": 1`;
  - a finding (`*.finding.json`, or any JSON object with an `"oracle"` key):
    `Finding.to_json()`; its case is the one replayed.

Versions. A JSON case or finding carrying `"version"` other than
`CASE_VERSION` is refused ("unknown case version"), so a file written by a
later format is never misread. A binary case has no such check: its first
byte is part of the fuzz input (libFuzzer mutates it like any other), the
decoder reads every value as version 1, and replay must run exactly the case
the fuzzer ran. A truncated binary file therefore decodes as its prefix, as
in the fuzzer. What does catch a damaged file is its name: a file named by
the sha1 of its content (libFuzzer's `<sha1>` and `crash-<sha1>`, our
`<oracle>-<sha1>.bin`; for `.json` and `.finding.json` the sha1 of the
case's binary form) whose content no longer has that sha1 is reported as
truncated or corrupt.

Directories are read recursively in sorted order. Skipped: names starting
with "." (our temporary files among them) and the non-case files a libFuzzer
corpus tree holds (`*.dict`, `*.options`, `*.md`, `*.txt`).

A case is read once per stem: of `X.bin`, `X.json` and `X.finding.json`
(the three encodings of one finding) only the `.bin` is read, else the
`.json`, else the finding, so a folder of kept findings replays each once.

Every problem is a `CorpusError` whose `str()` is one line naming the file
and the problem; iterating a corpus yields it in place of that file's case
so the caller reports it and goes on.

Findings are written per target directory as `<oracle>-<sha1 of binary>`
`.bin`, `.json` and `.finding.json`, each through a temporary file in the
same directory and `os.replace`, the finding last: a reader never sees a
half-written file, and a `.finding.json` means the three are complete.
Names are content hashes, so several processes sharing one directory write
identical files for the same finding and never clobber a different one;
a finding whose `.finding.json` exists already is not written again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Iterable, Iterator

from .binary import decode, encode
from .value import Case, CaseError

CASE_VERSION = 1
FINDING_SUFFIX = ".finding.json"
SKIP_SUFFIXES = (".dict", ".options", ".md", ".txt")
# What a campaign's output directory holds besides cases: its root causes for the next run.
SKIP_NAMES = ("root-causes.json",)
MAX_FILE = 64 << 20  # bytes; a larger file is no case this harness wrote


class CorpusError(Exception):
    """A file that cannot be read as a case; `str()` is `path: problem`."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Entry:
    path: str
    case: Case
    kind: str  # "binary" | "json" | "finding"
    finding: dict | None = None  # the finding's JSON when kind == "finding"


def kind_of(path: str) -> str:
    if path.endswith(FINDING_SUFFIX):
        return "finding"
    return "json" if path.endswith(".json") else "binary"


def read_case(path: str) -> Entry:
    """The case in `path`; raises CorpusError naming the file and the problem."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise CorpusError(path, "no such file (vanished before it was read?)") from None
    except IsADirectoryError:
        raise CorpusError(path, "is a directory") from None
    except OSError as e:
        raise CorpusError(path, f"cannot read: {e.strerror or e}") from None
    if len(data) > MAX_FILE:
        raise CorpusError(path, f"larger than {MAX_FILE >> 20} MiB, not a case")
    kind = kind_of(path)
    named = named_sha1(path)
    if kind == "binary":
        # Decoding is total; a content-hash name is what can tell a damaged file.
        if named and content_name(data) != named:
            raise CorpusError(path, f"{len(data)} bytes whose sha1 is not the one in the name: truncated or corrupt")
        return Entry(path, decode(data), "binary")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(path, f"not UTF-8 JSON: {e.reason} at byte {e.start}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        # The text ends before the document does: a cut-off write or copy.
        cut = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")
        raise CorpusError(path, f"{'truncated' if cut else 'corrupt'} JSON: {e.msg} (line {e.lineno} column {e.colno})") from None
    try:
        entry = case_from_json(obj, path)
    except CaseError as e:
        raise CorpusError(path, f"not a valid case: {e}") from None
    if named and content_name(encode(entry.case)) != named:
        raise CorpusError(path, "its case is not the one whose binary sha1 is in the name: edited or corrupt")
    return entry


# libFuzzer and our findings name a file by the sha1 of its (binary) content:
# `<sha1>`, `crash-<sha1>`, `<oracle>-<sha1>.bin|.json|.finding.json`. Not
# `minimized-from-<sha1>`, which names the input it came from.
_SHA1_NAME = re.compile(r"(?:^|-)([0-9a-f]{40})(?:\.bin|\.json|\.finding\.json)?$")


def named_sha1(path: str) -> str | None:
    """The sha1 a file's name promises for its content, if it is named that way."""
    name = os.path.basename(path)
    m = _SHA1_NAME.search(name)
    if m is None or name.startswith("minimized-from-"):
        return None
    return m.group(1)


def case_from_json(obj, path: str = "<json>") -> Entry:
    """A parse request, a versioned case or a finding object as an Entry; raises CaseError."""
    if not isinstance(obj, dict):
        raise CaseError(f"a case is a JSON object, not {type(obj).__name__}")
    if "schema_version" in obj and "findings" in obj:
        raise CaseError("a vsock-fuzz report (--json), not a case; keep reports out of corpus directories")
    _check_version(obj)
    if "oracle" in obj:
        return Entry(path, _finding_case(obj), "finding", obj)
    op = obj.get("op", "parse")
    if op != "parse":
        raise CaseError(f"op is {op!r}, not a parse request")
    return Entry(path, Case.from_request(obj), "json")


def _check_version(obj: dict) -> None:
    v = obj.get("version", CASE_VERSION)
    if v != CASE_VERSION:
        raise CaseError(f"unknown case version {v!r} (this build reads version {CASE_VERSION})")


def _finding_case(obj: dict) -> Case:
    # Finding.to_json(): the case as a request under "case", its binary form as hex under "binary".
    case = obj.get("case")
    if isinstance(case, dict):
        _check_version(case)
        return Case.from_request(case)
    hx = obj.get("binary")
    if isinstance(hx, str):
        try:
            return decode(bytes.fromhex(hx))
        except ValueError:
            raise CaseError("finding's \"binary\" is not a hex string") from None
    raise CaseError("finding holds no \"case\" request and no \"binary\" hex")


def case_to_json(case: Case) -> dict:
    """The JSON file form: the parse request (no id) with the case version."""
    return {"version": CASE_VERSION, **case.to_request()}


def dumps_case(case: Case) -> bytes:
    return (json.dumps(case_to_json(case), indent=1) + "\n").encode()


# --- walking a corpus ----------------------------------------------------------

def _skipped(name: str) -> bool:
    return name.startswith(".") or name.endswith(SKIP_SUFFIXES) or name in SKIP_NAMES


def list_files(paths: Iterable[str]) -> Iterator[str | CorpusError]:
    """Every case file under `paths` (files as given, directories recursively, sorted)."""
    for path in paths:
        if os.path.isdir(path):
            yield from _walk_dir(path)
        elif os.path.exists(path) or os.path.islink(path):
            yield path
        else:
            yield CorpusError(path, "no such file or directory")


def _walk_dir(top: str, seen: frozenset = frozenset()) -> Iterator[str | CorpusError]:
    real = os.path.realpath(top)
    if real in seen:  # a symlink back up the tree
        yield CorpusError(top, "directory already being read (symlink loop), skipped")
        return
    seen = seen | {real}
    try:
        names = sorted(os.listdir(top))
    except OSError as e:
        yield CorpusError(top, f"cannot list directory: {e.strerror or e}")
        return
    for name in names:
        if _skipped(name):
            continue
        path = os.path.join(top, name)
        if os.path.isdir(path):
            yield from _walk_dir(path, seen)
        else:
            yield path


# A finding's three files hold one case (write_finding); the one read for it, preferred first.
ENCODINGS = (".bin", ".json", FINDING_SUFFIX)


def _stem(path: str) -> tuple[str, int] | None:
    """(stem, preference) of a file in one of ENCODINGS, else None."""
    suffix = next((s for s in (FINDING_SUFFIX, ".bin", ".json") if path.endswith(s)), None)  # the longest first
    return None if suffix is None else (os.path.normpath(path[:-len(suffix)]), ENCODINGS.index(suffix))


def one_per_stem(items: Iterable[str | CorpusError]) -> Iterator[str | CorpusError]:
    """`items` with `X.bin`, `X.json` and `X.finding.json` as one file: the `.bin`, else the
    `.json`, else the finding, at the place of the first of them."""
    items = list(items)
    best: dict[str, tuple[int, str]] = {}
    for item in items:
        if isinstance(item, str) and (key := _stem(item)):
            best[key[0]] = min(best.get(key[0], (key[1], item)), (key[1], item))
    done = set()
    for item in items:
        key = _stem(item) if isinstance(item, str) else None
        if key is None:
            yield item
        elif key[0] not in done:
            done.add(key[0])
            yield best[key[0]][1]


def iter_cases(paths: Iterable[str]) -> Iterator[Entry | CorpusError]:
    """Each case under `paths` in order, once (one_per_stem: a kept finding is one case in three
    files), or the CorpusError that stands for an unreadable one."""
    for item in one_per_stem(list_files(paths)):
        if isinstance(item, CorpusError):
            yield item
            continue
        try:
            yield read_case(item)
        except CorpusError as e:
            yield e


# --- writing -------------------------------------------------------------------

def atomic_write(path: str, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_case(path: str, case: Case, form: str | None = None) -> None:
    """`case` to `path` as "json" or "bin" (default: by the extension)."""
    form = form or ("json" if path.endswith(".json") else "bin")
    atomic_write(path, dumps_case(case) if form == "json" else encode(case))


def content_name(data: bytes) -> str:
    """libFuzzer's corpus name for an input: the sha1 of its bytes."""
    return hashlib.sha1(data).hexdigest()


def write_finding(directory: str, finding, target: str | None = None) -> tuple[str, bool]:
    """Keep `finding` in `directory`; returns (path stem, whether it was new).

    `target` names the target spec in the finding's reproduce command, which replays the
    `.bin` by the path it is written at: `directory` as given (relative to the current
    directory, or absolute), so the command works from where the writer ran.
    """
    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(directory, finding.file_stem())
    if os.path.exists(stem + FINDING_SUFFIX):
        return stem, False
    binary = encode(finding.case)
    atomic_write(stem + ".bin", binary)
    atomic_write(stem + ".json", dumps_case(finding.case))
    # Last: its presence says the other two are complete.
    atomic_write(stem + FINDING_SUFFIX, (json.dumps(finding.to_json(target, stem + ".bin"), indent=1) + "\n").encode())
    return stem, True
