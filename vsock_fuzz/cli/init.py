"""`vsock-fuzz init rust DIR`: a Rust adapter crate to start from.

DIR gets a cargo crate, a workspace of its own, that takes the adapter kit (crate
`vsock-fuzz-adapter`, `adapters/rust/kit` in vsock-fuzz's repository) as a git dependency
pinned to a commit; a device stub that passes `vsock-fuzz check` as written; a README of
three commands (build, check, fuzz); and a GitHub workflow that runs the reusable action.

The pin is the commit of the vsock-fuzz that runs, so the kit and the harness speak the same
protocol: the git checkout this package runs from (an editable install or the source tree),
else what pip recorded when it installed vsock-fuzz (PEP 610 direct_url.json: a git URL and
its commit, or a local checkout). --kit-git and --kit-rev replace either half.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from . import EXIT_CLEAN, EXIT_ERROR

HELP = "write a Rust adapter crate (the kit pinned as a git dependency, a device stub that passes check, a CI workflow)"

SCAFFOLD = Path(__file__).resolve().parent.parent / "scaffold" / "rust"
# file in the crate -> its template in SCAFFOLD (no dotfiles, no Cargo.toml: cargo reads every
# Cargo.toml of a git dependency's repository, and a template is no manifest)
FILES = {
    "Cargo.toml": "Cargo.toml.in",
    "src/main.rs": "main.rs",
    "README.md": "README.md",
    ".gitignore": "gitignore",
    ".github/workflows/vsock-fuzz.yml": "vsock-fuzz.yml",
}
KIT_MANIFEST = Path("adapters", "rust", "kit", "Cargo.toml")
# cargo's rules for a package name, and the binary names it forbids
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
RESERVED = {"build", "deps", "examples", "incremental", "test"}
SCP_LIKE = re.compile(r"([\w.-]+)@([\w.-]+):(?!//)(.+)\Z")  # git@host:path, which cargo does not take
GITHUB = re.compile(r"(?:https?://|ssh://git@|git://|git@)github\.com[/:]([\w.-]+)/([\w.-]+?)(?:\.git)?/?\Z")


def add_arguments(p) -> None:
    p.add_argument("language", choices=["rust"], help="the adapter's language (rust: a cargo crate on the kit)")
    p.add_argument("dir", metavar="DIR", help="where to write the crate (created; must be empty unless --force)")
    p.add_argument("--name", help="the crate and binary name (default: DIR's last component)")
    p.add_argument("--kit-git", metavar="URL",
                   help="the git repository of vsock-fuzz the kit comes from, a URL or a local checkout's path "
                        "(default: where this vsock-fuzz came from)")
    p.add_argument("--kit-rev", metavar="REV",
                   help="the commit of that repository to pin (default: the one this vsock-fuzz runs)")
    p.add_argument("--force", action="store_true", help="write into a DIR that is not empty (files of the same name are overwritten)")


class PinError(Exception):
    pass


@dataclass(frozen=True)
class Pin:
    url: str
    rev: str
    source: str  # where the pin came from, said to the user


def run(args) -> int:
    def error(msg: str) -> int:
        print(f"vsock-fuzz init: error: {msg}", file=sys.stderr)
        return EXIT_ERROR

    target = Path(args.dir)
    name = args.name or target.resolve().name
    if not NAME.match(name) or name in RESERVED:
        return error(f"{name!r} cannot name a cargo package and its binary (a letter, then letters, digits, "
                     f"- or _; not {', '.join(sorted(RESERVED))}): give --name NAME")
    if target.exists() and not target.is_dir():
        return error(f"{args.dir} is not a directory")
    if target.is_dir() and any(target.iterdir()) and not args.force:
        return error(f"{args.dir} is not empty: give an empty or new directory, or --force to write into it")
    try:
        pin = resolve_pin(args.kit_git, args.kit_rev, source_tree=_source_tree(), direct_url=_direct_url())
    except PinError as e:
        return error(str(e))
    action = action_ref(pin.url, pin.rev)
    values = {
        "NAME": name, "KIT_GIT": pin.url, "KIT_REV": pin.rev,
        "ACTION": action or f"<owner>/vsock-fuzz@{pin.rev}",
        "ACTION_NOTE": "vsock-fuzz at the kit's commit: the action installs that very version" if action else
                       f"<owner>/vsock-fuzz: put vsock-fuzz's GitHub repository here (the kit's URL, {pin.url}, "
                       f"is no GitHub one); the ref is the kit's commit",
    }
    try:
        for dest, template in FILES.items():
            path = target / dest
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render((SCAFFOLD / template).read_text(encoding="utf-8"), values), encoding="utf-8")
    except OSError as e:
        return error(f"cannot write {args.dir}: {e.strerror or e}")

    shown = os.path.normpath(args.dir)
    print(f"wrote {shown}/: {', '.join(FILES)}")
    print(f"kit: vsock-fuzz-adapter from {pin.url} at {pin.rev} ({pin.source})")
    for note in _notes(pin, action):
        print(f"note: {note}")
    print("\nnext:")
    for line in next_steps(shown, name):
        print(f"  {line}")
    from . import path_hint
    hint = path_hint()
    if hint:
        print(hint, file=sys.stderr)
    return EXIT_CLEAN


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    left = re.findall(r"\{\{[A-Z_]+\}\}", text)
    assert not left, f"template placeholders without a value: {left}"
    return text


def next_steps(shown: str, name: str) -> list[str]:
    """Build, check and fuzz the crate at `shown` (as given, relative to here), from here."""
    def under(*parts: str) -> str:
        return os.path.join(*parts) if shown == "." else os.path.join(shown, *parts)
    # cargo puts the binary under CARGO_TARGET_DIR when it is set (relative: to here, as cargo reads it)
    target_dir = os.environ.get("CARGO_TARGET_DIR") or under("target")
    binary = os.path.join(target_dir, "release", name)  # holds a /: run as a path, not looked up on PATH
    spec = shlex.quote("cmd:" + shlex.quote(binary))
    build = "cargo build --release" + ("" if shown == "." else f" --manifest-path {shlex.quote(under('Cargo.toml'))}")
    return [
        build,
        f"vsock-fuzz check --target {spec}",
        f"vsock-fuzz fuzz --target {spec} --max-time 60 --out {shlex.quote(under('fuzz-out'))}",
    ]


def _notes(pin: Pin, action: str | None) -> list[str]:
    notes = []
    if not re.fullmatch(r"[0-9a-f]{40}", pin.rev):
        notes.append(f"{pin.rev} is no full commit id: the crate builds whatever it names when Cargo.lock is made")
    if pin.url.startswith("file:"):
        notes.append(f"the kit comes from {pin.url}, which only this machine has: for CI, pin a URL it can fetch "
                     f"(--kit-git, or edit Cargo.toml)")
        checkout = Path(url2pathname(urlparse(pin.url).path))
        if _git(checkout, "status", "--porcelain", "--", str(KIT_MANIFEST.parent)):
            notes.append(f"{checkout / KIT_MANIFEST.parent} has changes not committed: the crate builds the kit "
                         f"as committed at {pin.rev}")
    if action is None:
        notes.append("the workflow's `uses: <owner>/vsock-fuzz@...` is a placeholder: name vsock-fuzz's GitHub "
                     "repository there")
    return notes


def resolve_pin(kit_git: str | None, kit_rev: str | None, *, source_tree: Path | None,
                direct_url: dict | None) -> Pin:
    """The kit's git URL and commit: the options, else the checkout `source_tree` (the one this
    package runs from), else pip's record of the install (`direct_url`, PEP 610)."""
    # cargo takes URLs only
    if kit_git and os.path.isdir(kit_git) and "://" not in kit_git:
        kit_git = Path(kit_git).resolve().as_uri()
    elif kit_git and (m := SCP_LIKE.match(kit_git)):
        kit_git = f"ssh://{m[1]}@{m[2]}/{m[3]}"
    if kit_git and kit_rev:
        return Pin(kit_git, kit_rev, "given")
    found = (_checkout_pin(source_tree, "this checkout") if source_tree else None) or _installed_pin(direct_url)
    if found is None:
        raise PinError("cannot tell which vsock-fuzz commit to pin the kit to (this vsock-fuzz was installed from "
                       "neither a git URL nor a git checkout): give --kit-git URL --kit-rev COMMIT, e.g. "
                       "--kit-git https://github.com/<owner>/vsock-fuzz --kit-rev <commit>")
    if kit_git:
        return Pin(kit_git, found.rev, f"commit from {found.source}")
    if kit_rev:
        return Pin(found.url, kit_rev, f"URL from {found.source}")
    return found


def _installed_pin(info: dict | None) -> Pin | None:
    if not info or not isinstance(info.get("url"), str):
        return None
    url = info["url"]
    vcs = info.get("vcs_info")
    if isinstance(vcs, dict):
        if vcs.get("vcs") == "git" and vcs.get("commit_id"):
            return Pin(url, vcs["commit_id"], "the git URL vsock-fuzz was installed from, at the commit pip recorded")
        return None
    if "dir_info" in info and url.startswith("file:"):
        return _checkout_pin(Path(url2pathname(urlparse(url).path)), "the checkout vsock-fuzz was installed from")
    return None


def _checkout_pin(root: Path, what: str) -> Pin | None:
    """`root` as a file: URL at its HEAD, when it is the top of a git checkout holding the kit."""
    if not (root / KIT_MANIFEST).is_file():
        return None
    top, head = _git(root, "rev-parse", "--show-toplevel"), _git(root, "rev-parse", "--verify", "-q", "HEAD")
    if not top or not head or Path(top).resolve() != root.resolve():
        return None
    return Pin(root.resolve().as_uri(), head, f"{what}, {root.resolve()}, at its HEAD")


def _git(where: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _source_tree() -> Path:
    return Path(__file__).resolve().parents[2]


def _direct_url() -> dict | None:
    from importlib.metadata import PackageNotFoundError, distribution
    try:
        text = distribution("vsock-fuzz").read_text("direct_url.json")
        return json.loads(text) if text else None
    except (PackageNotFoundError, ValueError):
        return None


def action_ref(url: str, rev: str) -> str | None:
    """`owner/repo@rev` for the action's `uses:` when `url` is a GitHub repository."""
    m = GITHUB.match(url)
    return f"{m[1]}/{m[2]}@{rev}" if m else None
