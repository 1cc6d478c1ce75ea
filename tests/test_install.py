"""Installed from anywhere: the sdist and the wheel build with the project's own backend (what
`pip install` from a git URL or a checkout does), install into a clean virtual environment with
their dependencies from the registry, and the installed `vsock-fuzz` runs from an empty directory
with no checkout on the path."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)


def test_sdist_and_wheel_install_into_a_clean_venv_and_run(tmp_path):
    dist = tmp_path / "dist"
    built = run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", dist, ROOT], timeout=900)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    sdists, wheels = sorted(dist.glob("vsock_fuzz-*.tar.gz")), sorted(dist.glob("vsock_fuzz-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in dist.iterdir())
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", venv], timeout=300).returncode == 0
    bin_ = venv / "bin"
    # From the sdist, as `pip install git+URL` or `pip install ./checkout` builds it.
    done = run([bin_ / "python", "-m", "pip", "install", "-q", sdists[0]], timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_}{os.pathsep}{env.get('PATH', '')}"
    version = run(["vsock-fuzz", "--version"], cwd=work, env=env, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("vsock-fuzz "), version.stderr
    check = run(["vsock-fuzz", "check", "--target", "reference", "-q"], cwd=work, env=env, timeout=120)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    fuzz = run(["vsock-fuzz", "fuzz", "--target", "reference", "--runs", 300, "--out", "out", "-q"],
               cwd=work, env=env, timeout=300)
    assert fuzz.returncode == 0 and "no findings" in fuzz.stdout, fuzz.stdout[-2000:] + fuzz.stderr[-2000:]
    assert (work / "out").is_dir() and not (work / "vsock_fuzz").exists()
