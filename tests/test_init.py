"""`vsock-fuzz init rust DIR`: from an empty directory outside the checkout, the crate it
writes builds against the kit as a git dependency pinned to a commit of this repository, the
commands it prints run as printed (`check` passes on the stub, a short `fuzz` finds nothing at
--fail-on), and a bug planted in the stub is found. Then the pin's sources (PEP 610
direct_url.json shapes, the options, a checkout), the refusals and the files named in the docs.

cargo missing is a failure, not a skip (as in tests/test_rust_adapters.py). The builds run
offline: cargo's --offline refuses to fetch even a file: git source, so the kit is first put
in cargo's git cache with crates.io pointed at an empty directory (fetching a local repository
needs no network; resolution then stops at the kit's first crates.io dependency); the build
then takes the kit's dependencies from the registry cache `make adapters` filled. The crates
share one CARGO_TARGET_DIR, so the kit's dependencies are compiled once.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from vsock_fuzz.cli import init as init_cmd
from vsock_fuzz.cli import main

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the environment's console scripts: vsock-fuzz
TIMEOUT = 300


def cargo() -> str:
    exe = shutil.which("cargo")
    if exe is None:
        pytest.fail("cargo is not on PATH: the crate `vsock-fuzz init rust` writes cannot be built "
                    "(install a Rust toolchain, e.g. rustup)", pytrace=False)
    return exe


def git_head() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert done.returncode == 0, f"the checkout must be a git repository with a commit: {done.stderr}"
    return done.stdout.strip()


KIT_URL = ROOT.as_uri()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """An empty directory outside the checkout, and the environment a user there has:
    vsock-fuzz on PATH, cargo offline, one target directory for every crate of this module."""
    cargo()
    assert (BIN / "vsock-fuzz").exists(), f"no vsock-fuzz console script beside {sys.executable}"
    base = tmp_path_factory.mktemp("init")
    here = base / "work"
    here.mkdir()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               CARGO_TARGET_DIR=str(base / "cargo-target"), CARGO_NET_OFFLINE="true")
    return here, env, base


def vsock_fuzz(args, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(["vsock-fuzz", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def printed_steps(stdout: str) -> list[str]:
    """The commands after `next:`, as printed."""
    tail = stdout.split("\nnext:\n", 1)[1]
    return [line.strip() for line in tail.splitlines() if line.startswith("  ")]


def fetch_kit(crate: Path, env: dict, base: Path) -> None:
    """Put the pinned kit in cargo's git cache without the network (module docstring)."""
    empty = base / "no-registry"
    empty.mkdir(exist_ok=True)
    online = {k: v for k, v in env.items() if k != "CARGO_NET_OFFLINE"}
    subprocess.run(["cargo", "generate-lockfile", "--manifest-path", str(crate / "Cargo.toml"),
                    "--config", 'source.crates-io.replace-with="vsock-fuzz-test-none"',
                    "--config", f'source.vsock-fuzz-test-none.directory="{empty}"'],
                   env=online, capture_output=True, text=True, timeout=TIMEOUT)  # fails at crates.io, as meant
    (crate / "Cargo.lock").unlink(missing_ok=True)


def sh(line: str, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(line, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def crate(work):
    """`vsock-fuzz init rust mydev` pinned to this checkout's HEAD, and its first printed
    command (the build) run as printed."""
    here, env, base = work
    done = vsock_fuzz(["init", "rust", "mydev", "--kit-git", KIT_URL, "--kit-rev", git_head()], here, env)
    assert done.returncode == 0, done.stderr
    steps = printed_steps(done.stdout)
    assert len(steps) == 3, done.stdout
    fetch_kit(here / "mydev", env, base)
    build = sh(steps[0], here, env)
    assert build.returncode == 0, build.stderr[-4000:]
    return here, env, done.stdout, steps


def test_printed_commands_build_check_and_fuzz_the_stub(crate):
    here, env, out, steps = crate
    assert steps[0] == "cargo build --release --manifest-path mydev/Cargo.toml"
    binary = Path(env["CARGO_TARGET_DIR"], "release", "mydev")
    assert binary.is_file()
    assert steps[1] == f"vsock-fuzz check --target {shlex.quote('cmd:' + str(binary))}"
    check = sh(steps[1], here, env)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    assert re.search(r"(\d+) rows in \S+: \1 pass, 0 warn, 0 fail; target mydev 0\.1\.0", check.stdout), check.stdout
    # the printed campaign is a minute; five seconds show it runs clean
    assert " --max-time 60 " in steps[2] and steps[2].endswith("--out mydev/fuzz-out")
    fuzz = sh(steps[2].replace(" --max-time 60 ", " --max-time 5 "), here, env)
    assert fuzz.returncode == 0, fuzz.stdout[-4000:] + fuzz.stderr[-2000:]
    assert (here / "mydev" / "fuzz-out").is_dir()
    assert f"at {git_head()} (given)" in out


def test_a_bug_planted_in_the_stub_is_found(crate):
    """The stub stops checking buffer direction: check fails on the writable/readable slips."""
    here, env, _, _ = crate
    done = vsock_fuzz(["init", "rust", "buggy-dev", "--name", "buggy", "--kit-git", KIT_URL, "--kit-rev", git_head()],
                      here, env)
    assert done.returncode == 0, done.stderr
    main_rs = here / "buggy-dev" / "src" / "main.rs"
    source = main_rs.read_text()
    direction = "if b.writable != (self.p.queue == QueueKind::Rx) {"
    assert source.count(direction) == 1
    main_rs.write_text(source.replace(direction, "if false {"))
    steps = printed_steps(done.stdout)
    build = sh(steps[0], here, env)
    assert build.returncode == 0, build.stderr[-4000:]
    check = sh(steps[1], here, env)
    assert check.returncode == 1, check.stdout[-4000:] + check.stderr[-2000:]
    assert "safety.direction" in check.stdout and "rx/readable-slip@0" in check.stdout


def test_the_crate_pins_the_kit_and_its_workflow_uses_the_action(crate):
    here, _, _, _ = crate
    d = here / "mydev"
    manifest = tomllib.loads((d / "Cargo.toml").read_text())
    assert manifest["package"]["name"] == "mydev"
    assert manifest["dependencies"]["vsock-fuzz-adapter"] == {"git": KIT_URL, "rev": git_head()}
    assert manifest["workspace"] == {}  # its own workspace, wherever it is created
    assert (d / ".gitignore").read_text().split() == ["/target/", "/fuzz-out/"]
    assert "// TODO: your device's parsing here" in (d / "src" / "main.rs").read_text()

    readme = (d / "README.md").read_text()
    commands = [line.strip() for line in readme.splitlines() if line.startswith("    ")]
    assert commands == ["cargo build --release",
                        "vsock-fuzz check --target cmd:target/release/mydev",
                        "vsock-fuzz fuzz --target cmd:target/release/mydev --max-time 60"]

    flow = yaml.safe_load((d / ".github" / "workflows" / "vsock-fuzz.yml").read_text())
    steps = flow["jobs"]["vsock-fuzz"]["steps"]
    assert any(s.get("run") == "cargo build --release" for s in steps)
    (action,) = [s for s in steps if str(s.get("uses", "")).endswith(f"vsock-fuzz@{git_head()}")]
    assert action["with"]["target"] == "cmd:./target/release/mydev"
    inputs = yaml.safe_load((ROOT / "action.yml").read_text())["inputs"]
    assert set(action["with"]) <= set(inputs)


def test_every_file_the_readmes_name_exists(crate):
    """adapters/rust/README.md names files of this repository (from adapters/rust or the root)
    or of the crate `init` writes; the crate's README names its own files."""
    here, _, _, _ = crate
    d = here / "mydev"
    path = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.(?:rs|toml|md|py|yml|json|lock)|\.ci/run|(?:[\w.-]+/)+)`")

    def named(text):  # what cargo and fuzz write is not there before they run
        return {m for m in path.findall(text) if not m.startswith(("target/", "fuzz-out/"))}

    doc = named((ROOT / "adapters" / "rust" / "README.md").read_text())
    assert {"src/main.rs", ".github/workflows/vsock-fuzz.yml", "tests/test_init.py", "action.yml", "kit/"} <= doc
    missing = [p for p in doc if not any((base / p).exists() for base in (ROOT / "adapters" / "rust", ROOT, d))]
    assert not missing, missing
    mine = named((d / "README.md").read_text())
    assert mine and not [p for p in mine if not (d / p).exists()], mine


# ---- the pin, the refusals, the printed commands (in-process, nothing built) ----

def test_pin_from_the_options_in_urls_cargo_takes(tmp_path):
    pin = init_cmd.resolve_pin("https://example.org/vsock-fuzz.git", "abc", source_tree=None, direct_url=None)
    assert (pin.url, pin.rev, pin.source) == ("https://example.org/vsock-fuzz.git", "abc", "given")
    pin = init_cmd.resolve_pin(str(ROOT), "abc", source_tree=None, direct_url=None)
    assert pin.url == KIT_URL
    pin = init_cmd.resolve_pin("git@github.com:acme/vsock-fuzz.git", "abc", source_tree=None, direct_url=None)
    assert pin.url == "ssh://git@github.com/acme/vsock-fuzz.git"


def test_pin_from_a_git_install_records_url_and_commit():
    # pip install 'git+https://github.com/acme/vsock-fuzz@v1' (PEP 610)
    info = {"url": "https://github.com/acme/vsock-fuzz", "vcs_info": {
        "vcs": "git", "requested_revision": "v1", "commit_id": "1" * 40}}
    pin = init_cmd.resolve_pin(None, None, source_tree=None, direct_url=info)
    assert (pin.url, pin.rev) == ("https://github.com/acme/vsock-fuzz", "1" * 40)
    assert init_cmd.action_ref(pin.url, pin.rev) == f"acme/vsock-fuzz@{'1' * 40}"


def test_pin_from_a_checkout_install_or_the_source_tree_is_its_head(tmp_path):
    for info in ({"url": KIT_URL, "dir_info": {}}, {"url": KIT_URL, "dir_info": {"editable": True}}):
        pin = init_cmd.resolve_pin(None, None, source_tree=None, direct_url=info)
        assert (pin.url, pin.rev) == (KIT_URL, git_head())
    # the tree this package runs from wins over pip's record
    info = {"url": "https://github.com/acme/vsock-fuzz", "vcs_info": {"vcs": "git", "commit_id": "1" * 40}}
    pin = init_cmd.resolve_pin(None, None, source_tree=ROOT, direct_url=info)
    assert (pin.url, pin.rev) == (KIT_URL, git_head())
    # a tree that is no checkout of this repository is no source
    pin = init_cmd.resolve_pin(None, None, source_tree=tmp_path, direct_url=info)
    assert pin.url == "https://github.com/acme/vsock-fuzz"


def test_one_option_replaces_its_half_of_the_pin():
    info = {"url": "https://github.com/acme/vsock-fuzz", "vcs_info": {"vcs": "git", "commit_id": "1" * 40}}
    pin = init_cmd.resolve_pin("https://example.org/mirror.git", None, source_tree=None, direct_url=info)
    assert (pin.url, pin.rev) == ("https://example.org/mirror.git", "1" * 40)
    pin = init_cmd.resolve_pin(None, "2" * 40, source_tree=None, direct_url=info)
    assert (pin.url, pin.rev) == ("https://github.com/acme/vsock-fuzz", "2" * 40)


@pytest.mark.parametrize("info", [
    None,
    {"url": "https://example.org/vsock_fuzz-0.1.0.tar.gz", "archive_info": {"hashes": {"sha256": "00"}}},
    {"url": "https://hg.example.org/vsock-fuzz", "vcs_info": {"vcs": "hg", "commit_id": "abc"}},
    {"url": "file:///nonexistent/vsock-fuzz", "dir_info": {}},
])
def test_no_pin_known_is_an_error_naming_the_options(info, tmp_path):
    with pytest.raises(init_cmd.PinError, match="--kit-git URL --kit-rev COMMIT"):
        init_cmd.resolve_pin(None, None, source_tree=tmp_path, direct_url=info)
    with pytest.raises(init_cmd.PinError):
        init_cmd.resolve_pin("https://example.org/x.git", None, source_tree=None, direct_url=info)


def test_no_pin_known_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(init_cmd, "_source_tree", lambda: tmp_path)
    monkeypatch.setattr(init_cmd, "_direct_url", lambda: None)
    assert main(["init", "rust", str(tmp_path / "dev")]) == 2
    assert "--kit-git URL --kit-rev COMMIT" in capsys.readouterr().err
    assert not (tmp_path / "dev").exists()


def test_a_directory_not_empty_is_refused_unless_force(tmp_path, capsys):
    d = tmp_path / "dev"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    pin = ["--kit-git", "https://github.com/acme/vsock-fuzz", "--kit-rev", "1" * 40]
    assert main(["init", "rust", str(d), *pin]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--force" in err
    assert [p.name for p in d.iterdir()] == ["notes.txt"]
    assert main(["init", "rust", str(d), *pin, "--force"]) == 0
    assert (d / "notes.txt").read_text() == "mine" and (d / "src" / "main.rs").is_file()


def test_a_name_cargo_refuses_asks_for_name(tmp_path, capsys):
    pin = ["--kit-git", "https://github.com/acme/vsock-fuzz", "--kit-rev", "1" * 40]
    assert main(["init", "rust", str(tmp_path / "1dev"), *pin]) == 2
    assert "--name NAME" in capsys.readouterr().err
    assert main(["init", "rust", str(tmp_path / "1dev"), "--name", "dev1", *pin]) == 0
    assert 'name = "dev1"' in (tmp_path / "1dev" / "Cargo.toml").read_text()


def test_the_workflow_names_the_github_repository_or_says_it_is_a_placeholder(tmp_path, capsys):
    rev = "1" * 40
    assert main(["init", "rust", str(tmp_path / "a"), "--kit-git", "git@github.com:acme/vsock-fuzz.git",
                 "--kit-rev", rev]) == 0
    out = capsys.readouterr().out
    assert "placeholder" not in out
    assert f"uses: acme/vsock-fuzz@{rev}\n" in (tmp_path / "a" / ".github" / "workflows" / "vsock-fuzz.yml").read_text()
    assert main(["init", "rust", str(tmp_path / "b"), "--kit-git", "https://git.example.org/vsock-fuzz.git",
                 "--kit-rev", rev]) == 0
    out = capsys.readouterr().out
    assert "note: the workflow's `uses: <owner>/vsock-fuzz@...` is a placeholder" in out
    assert f"uses: <owner>/vsock-fuzz@{rev}\n" in (tmp_path / "b" / ".github" / "workflows" / "vsock-fuzz.yml").read_text()


def test_printed_commands_follow_the_directory_and_cargo_target_dir(monkeypatch):
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)
    assert init_cmd.next_steps(".", "dev") == [
        "cargo build --release",
        "vsock-fuzz check --target cmd:target/release/dev",
        "vsock-fuzz fuzz --target cmd:target/release/dev --max-time 60 --out fuzz-out"]
    assert init_cmd.next_steps("my dev", "dev")[1] == \
        "vsock-fuzz check --target 'cmd:'\"'\"'my dev/target/release/dev'\"'\"''"
    assert shlex.split(init_cmd.next_steps("my dev", "dev")[1])[-1] == "cmd:'my dev/target/release/dev'"
    monkeypatch.setenv("CARGO_TARGET_DIR", "/tmp/t")
    assert init_cmd.next_steps("dev", "dev")[1] == "vsock-fuzz check --target cmd:/tmp/t/release/dev"


def test_the_templates_ship_in_the_package():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "vsock_fuzz.scaffold.rust" in conf["packages"]
    assert conf["package-data"]["vsock_fuzz.scaffold.rust"] == ["*"]
    shipped = {p.name for p in init_cmd.SCAFFOLD.iterdir()}
    assert set(init_cmd.FILES.values()) == shipped
    assert not any(name.startswith(".") or name == "Cargo.toml" for name in shipped)
