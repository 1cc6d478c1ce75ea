"""The example C target for the tests: `make c-target`'s binary when it is up
to date, else built into a temporary directory; tests skip, saying why, when
there is no C compiler."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "examples" / "c-target" / "vsock_target.c"
BUILT = ROOT / "examples" / "c-target" / "vsock_target"
_cache: dict = {}


def c_target() -> str:
    """Path of a built C target (skips the calling test when it cannot be built)."""
    if "path" in _cache:
        return _cache["path"]
    if BUILT.exists() and BUILT.stat().st_mtime >= SOURCE.stat().st_mtime:
        _cache["path"] = str(BUILT)
        return _cache["path"]
    cc = os.environ.get("CC", "cc")
    if not shutil.which(cc):
        pytest.skip(f"no C compiler ({cc!r} not found): the example C target cannot be built")
    out = Path(tempfile.mkdtemp(prefix="vsock-c-target-")) / "vsock_target"
    done = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-o", str(out), str(SOURCE)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"{cc} failed on {SOURCE}:\n{done.stderr}"
    _cache["path"] = str(out)
    return _cache["path"]
