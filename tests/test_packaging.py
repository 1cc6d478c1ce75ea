"""The wheel: it ships the seed corpus and the dictionary (from corpus/, their one source),
an installed copy finds them with no checkout around, `vsock-fuzz seeds DIR` writes them out,
and `vsock-fuzz fuzz` starts from them when no --corpus/--dict is given."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vsock_fuzz.cli import main
from vsock_fuzz.engines import seeds

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"


def corpus_files() -> dict[str, bytes]:
    """What the wheel must carry: corpus/<harness>/* and corpus/vsock.dict, by path under vsock_fuzz/data/."""
    out = {"vsock_fuzz/data/vsock.dict": (CORPUS / "vsock.dict").read_bytes()}
    for h in seeds.HARNESSES:
        for p in (CORPUS / h).iterdir():
            out[f"vsock_fuzz/data/{h}/{p.name}"] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(out), "--no-deps", "-q", "-v"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # setuptools' license-table deprecation (and any other deprecation) is gone
    assert "Deprecat" not in done.stdout + done.stderr, done.stdout[-3000:] + done.stderr[-3000:]
    (whl,) = out.glob("vsock_fuzz-*.whl")
    return whl


def test_wheel_ships_the_seeds_and_dictionary(wheel):
    want = corpus_files()
    assert len(want) > 400 and all(f"vsock_fuzz/data/{h}/" in "".join(want) for h in seeds.HARNESSES)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        data = {n for n in names if n.startswith("vsock_fuzz/data/")}
        assert data == set(want), (sorted(data - set(want))[:5], sorted(set(want) - data)[:5])
        for name, content in want.items():
            assert z.read(name) == content, name
        assert not any("regressions" in n for n in names), "corpus/regressions stays out"
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in meta


def test_corpus_is_what_the_generator_writes(tmp_path):
    """corpus/ (the source the wheel takes) holds exactly the generated seeds and dictionary."""
    seeds.generate(str(tmp_path))
    for h in seeds.HARNESSES:
        assert sorted(os.listdir(tmp_path / h)) == sorted(os.listdir(CORPUS / h)), \
            f"corpus/{h} differs: run python -m vsock_fuzz.engines.seeds corpus/ --clean"
    assert (tmp_path / "vsock.dict").read_bytes() == (CORPUS / "vsock.dict").read_bytes()


def test_installed_wheel_uses_its_own_seeds_from_an_empty_directory(wheel, tmp_path):
    """Installed alone (no checkout on the path), from an empty directory: seeds writes the shipped
    files out, and the bare fuzz command starts from them (its corpus the packaged target/)."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=120)
    work = tmp_path / "empty"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    where = subprocess.run([sys.executable, "-c", "import vsock_fuzz.engines.seeds as s; print(s.packaged())"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where) == site / "vsock_fuzz" / "data"
    done = subprocess.run([sys.executable, "-m", "vsock_fuzz", "seeds", "out"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for h in seeds.HARNESSES:
        assert sorted(os.listdir(work / "out" / h)) == sorted(os.listdir(CORPUS / h))
    assert (work / "out" / "vsock.dict").read_bytes() == (CORPUS / "vsock.dict").read_bytes()
    # A device whose only bug a seed hits at once: found from the packaged seeds within a few hundred cases.
    fuzz = subprocess.run([sys.executable, "-m", "vsock_fuzz", "fuzz", "--target", "py:vsock_fuzz.zoo.region_end:parse",
                           "--runs", "600", "--seed", "1", "--minimize-time", "0", "--stop-on", "safety",
                           "--json", "r.json"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert fuzz.returncode == 1, fuzz.stdout[-2000:] + fuzz.stderr[-2000:]
    rep = json.loads((work / "r.json").read_text())
    assert any(f["family"] == "safety" for f in rep["findings"])


class _Stop(Exception):
    pass


@pytest.fixture
def captured(monkeypatch):
    """The Options `vsock-fuzz fuzz` hands its campaign (the campaign itself does not run)."""
    from vsock_fuzz.engines import campaign
    got = {}

    class Fake:
        def __init__(self, opts, out=None):
            got["opts"] = opts

        def run(self):
            raise _Stop

    monkeypatch.setattr(campaign, "Campaign", Fake)

    def run(*argv):
        with pytest.raises(_Stop):
            main(["fuzz", "--target", "reference", *argv])
        return got["opts"]
    return run


def test_fuzz_defaults_to_the_packaged_seeds_and_dictionary(captured, tmp_path):
    data = Path(seeds.packaged())
    opts = captured()
    assert [Path(d) for d in opts.corpus] == [data / "target"] and Path(opts.dict) == data / "vsock.dict"
    assert len(os.listdir(opts.corpus[0])) == len(os.listdir(CORPUS / "target"))
    # --no-seeds: an empty corpus and no dictionary; what is given explicitly still applies.
    opts = captured("--no-seeds")
    assert opts.corpus == [] and opts.dict is None
    opts = captured("--no-seeds", "--dict", str(CORPUS / "vsock.dict"))
    assert opts.corpus == [] and opts.dict == str(CORPUS / "vsock.dict")
    opts = captured("--corpus", str(tmp_path))
    assert opts.corpus == [str(tmp_path)] and Path(opts.dict) == data / "vsock.dict"


def test_seeds_command_keeps_existing_files_unless_forced(tmp_path, capsys):
    (tmp_path / "vsock.dict").write_text("mine\n")
    assert main(["seeds", str(tmp_path)]) == 0
    assert (tmp_path / "vsock.dict").read_text() == "mine\n"
    assert "kept (already there" in capsys.readouterr().out
    assert main(["seeds", str(tmp_path), "--force", "-q"]) == 0
    assert (tmp_path / "vsock.dict").read_bytes() == (CORPUS / "vsock.dict").read_bytes()
    assert capsys.readouterr().out == ""
    assert len(os.listdir(tmp_path / "target")) == len(os.listdir(CORPUS / "target"))
