"""ClusterFuzzLite / OSS-Fuzz, for real: .clusterfuzzlite/build.sh runs as the build image runs
it (SRC, OUT and WORK set, in $SRC/vsock-fuzz, pip3 and python3 those of the image's Python,
compile_python_fuzzer packing each harness with pyinstaller from PyPI), then every fuzzer it
built runs from $OUT as ClusterFuzzLite runs it, with its seed corpus and its dictionary. A
second build bakes a `cmd:` target into fuzz_target (VSOCK_FUZZ_TARGET set as the image
builds), and the fuzzer, run from where the build was moved to, drives that program.

Slow for a test (pyinstaller takes 10 to 20 seconds a fuzzer): the two builds run at once, in
a module-scoped fixture the tests share."""

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CFLITE = ROOT / ".clusterfuzzlite"
HARNESSES = sorted(p.stem for p in (ROOT / "harnesses").glob("fuzz_*.py"))
RUNS = 300


def why(p):
    return f"exit {p.returncode}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-5000:]}"


def pinned(name):
    """`name==X.Y.Z` as pyproject.toml pins it (dependencies or the test extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["test"]
    (req,) = [r for r in reqs if re.match(rf"{re.escape(name)}\s*==", r)]
    return req.replace(" ", "")


def make_image(base):
    """The build image's Python: a throwaway venv (never the project's own, which build.sh's
    `pip3 install .` would change) with what base-builder-python brings, atheris and
    pyinstaller, at the versions pyproject.toml pins. Its bin goes first on PATH."""
    venv = base / "python"
    made = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, why(made)
    got = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          pinned("atheris"), pinned("pyinstaller")], capture_output=True, text=True, timeout=900)
    assert got.returncode == 0, "pip could not install the image's tools\n" + why(got)
    return venv / "bin"


def copy_checkout(dest, keep=lambda rel: True):
    """The repository as the Dockerfile's `COPY .` sees a clean checkout: tracked files and
    new ones git does not ignore, but no Cargo build output (adapters/rust/target and the like)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src, parts = ROOT / rel, Path(rel).parts
        cargo_out = any(p == "target" and (ROOT.joinpath(*parts[:i]) / "Cargo.toml").exists()
                        for i, p in enumerate(parts[:-1]))
        if cargo_out or not src.is_file() or not keep(rel):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


def build(image, base, *, keep=lambda rel: True, before=None, **env):
    """Run build.sh as OSS-Fuzz's `compile` runs it in the project image: the Dockerfile's
    COPY lines lay out $SRC, `bash -eux $SRC/build.sh` runs in its WORKDIR. The workspace
    paths are ClusterFuzzLite's (OUT=<workspace>/build-out, not the image's /out)."""
    src, out, work = base / "src", base / "build-out", base / "work"
    for d in (src / "vsock-fuzz", out, work):
        d.mkdir(parents=True)
    copy_checkout(src / "vsock-fuzz", keep)
    shutil.copy2(CFLITE / "build.sh", src / "build.sh")
    if before:
        before(out)
    environ = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("VSOCK_FUZZ_")}
    environ.update(
        PATH=os.pathsep.join([str(CFLITE / "stand-ins"), str(image), os.environ["PATH"]]),
        SRC=str(src), OUT=str(out), WORK=str(work),
        # What ClusterFuzzLite's build_fuzzers passes to `docker run`, but no sanitizer: the
        # sanitizer runtime is built with OSS-Fuzz's clang, PyPI's atheris has none.
        FUZZING_ENGINE="libfuzzer", FUZZING_LANGUAGE="python", ARCHITECTURE="x86_64", SANITIZER="none",
        # pyinstaller packs each fuzzer at zlib level 9 (about 20 s of a fuzzer's 35 s here); the
        # level changes how small the package is, not what is in it.
        PYINSTALLER_ZLIB_COMPRESSION_LEVEL="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
        **env)
    done = subprocess.run(["bash", "-eux", src / "build.sh"], cwd=src / "vsock-fuzz", env=environ,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, why(done)
    return out


ADAPTER = """#!/bin/sh
# Notes how it was started, beside itself, then becomes the device program it is given.
echo "$0 $*" >> "$(dirname "$0")/adapter-started"
exec "$@"
"""


def put_adapter(out):
    """A build step of the project's own, before build.sh (the README's VMM recipe): the
    device program and the adapter that starts it, in $OUT where the fuzzers run beside them."""
    cc = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", out / "vsock_target",  # as `make c-target`
                         ROOT / "examples" / "c-target" / "vsock_target.c"],
                        capture_output=True, text=True, timeout=120)
    assert cc.returncode == 0, why(cc)
    (out / "vsock-adapter").write_text(ADAPTER)
    (out / "vsock-adapter").chmod(0o755)


def build_plain(base):
    return build(make_image(base), base)


def build_baked(base):
    """Built with VSOCK_FUZZ_TARGET naming the adapter as a Dockerfile's ENV can (the image's
    /out) and the device program under the $OUT the build ran with, then moved: ClusterFuzzLite
    runs a previous build from where it downloaded it, ClusterFuzz from where it unpacked it."""
    out = base / "build-out"
    # build.sh bakes fuzz_target alone: the other harnesses build as in the plain build, so
    # this one leaves them out.
    out = build(make_image(base), base, before=put_adapter,
                keep=lambda rel: not rel.startswith("harnesses/") or rel == "harnesses/fuzz_target.py",
                VSOCK_FUZZ_TARGET=f"cmd:/out/vsock-adapter {out}/vsock_target")
    assert sorted(p.name for p in out.iterdir() if p.stat().st_mode & stat.S_IXUSR) == \
        ["fuzz_target", "vsock-adapter", "vsock_target"]
    moved = base / "unpacked" / "build"
    moved.parent.mkdir()
    out.rename(moved)
    return moved


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """The plain build and the baked one, at the same time (pyinstaller uses one core), each
    in an image of its own since build.sh installs the package into it."""
    for tool in ("gcc", "zip"):  # base-builder has both; a machine without them fails, not skips
        assert shutil.which(tool), f"{tool} is needed to build as the image does"
    assert not Path("/out/vsock-adapter").exists(), "/out/vsock-adapter would hide a spec that was not rebased"
    with ThreadPoolExecutor(2) as pool:
        done = {name: pool.submit(how, tmp_path_factory.mktemp(name))
                for name, how in (("plain", build_plain), ("baked", build_baked))}
        return {name: future.result() for name, future in done.items()}


@pytest.fixture(scope="module")
def plain_build(builds):
    return builds["plain"]


def fuzz(out, name, cwd, **env):
    """Run $OUT/<fuzzer> as ClusterFuzzLite does: the seed corpus unpacked into the corpus
    directory, the dictionary beside the fuzzer passed with -dict, in an environment with none
    of the build's tools (the runner image has no project Python)."""
    corpus = cwd / f"{name}-corpus"
    corpus.mkdir(parents=True)
    with zipfile.ZipFile(out / f"{name}_seed_corpus.zip") as z:
        z.extractall(corpus)
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8", **env}
    return subprocess.run([out / name, f"-runs={RUNS}", "-seed=1", f"-dict={out / name}.dict", corpus],
                          cwd=cwd, env=environ, capture_output=True, text=True, timeout=300)


def assert_fuzzed(p, out, name, cwd):
    """Exit 0 after RUNS runs from the whole seed corpus, with the dictionary and coverage.
    Counted in what the build shipped: the checkout's corpus may grow while the test runs."""
    assert p.returncode == 0, why(p)
    log = p.stderr
    assert f"Done {RUNS} runs" in log, why(p)
    with zipfile.ZipFile(out / f"{name}_seed_corpus.zip") as z:
        seeds = [n for n in z.namelist() if not n.endswith("/")]
    assert seeds and f"seed corpus: files: {len(seeds)} " in log, why(p)  # every seed read
    entries = [ln for ln in (out / f"{name}.dict").read_text().splitlines() if ln.strip()[:1] not in ("", "#")]
    assert entries and f"Dictionary: {len(entries)} entries" in log, why(p)
    assert re.search(r"INITED cov: [1-9]\d* ", log), why(p)  # atheris instruments inside the package
    assert not list(cwd.glob("crash-*")) and not list(cwd.glob("timeout-*")), why(p)


def test_build_gives_each_harness_its_fuzzer_seeds_and_dictionary(plain_build):
    out = plain_build
    # What the runners take for fuzz targets: the executable files, each a wrapper of one
    # pyinstaller package (executable only once the wrapper runs).
    fuzzers = sorted(p.name for p in out.iterdir() if p.is_file() and p.stat().st_mode & stat.S_IXUSR)
    assert fuzzers == HARNESSES
    corpus = out.parent / "src" / "vsock-fuzz" / "corpus"  # as the build saw it
    for name in HARNESSES:
        assert "LLVMFuzzerTestOneInput" in (out / name).read_text()
        assert (out / f"{name}.pkg").stat().st_size > 1 << 20
        assert (out / f"{name}.dict").read_bytes() == (corpus / "vsock.dict").read_bytes()
        with zipfile.ZipFile(out / f"{name}_seed_corpus.zip") as z:
            assert sorted(n for n in z.namelist() if not n.endswith("/")) == \
                sorted(f.name for f in (corpus / name.removeprefix("fuzz_")).iterdir() if f.is_file())


@pytest.mark.parametrize("name", HARNESSES)
def test_built_fuzzer_runs_from_out_with_seeds_and_dict(plain_build, name, tmp_path):
    assert_fuzzed(fuzz(plain_build, name, tmp_path), plain_build, name, tmp_path)


def test_baked_cmd_target_is_what_the_moved_fuzzer_drives(builds, tmp_path):
    out = builds["baked"]
    started = out / "adapter-started"
    assert_fuzzed(fuzz(out, "fuzz_target", tmp_path / "baked"), out, "fuzz_target", tmp_path / "baked")
    # The adapter and the device program were found beside the fuzzer, not where it was built.
    lines = started.read_text().splitlines()
    assert lines and set(lines) == {f"{out}/vsock-adapter {out}/vsock_target"}
    # A VSOCK_FUZZ_TARGET set when the fuzzer runs still wins over the baked one.
    started.unlink()
    assert_fuzzed(fuzz(out, "fuzz_target", tmp_path / "run-time", VSOCK_FUZZ_TARGET="reference"),
                  out, "fuzz_target", tmp_path / "run-time")
    assert not started.exists()
