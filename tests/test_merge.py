"""`vsock-fuzz merge OUT IN...`: libFuzzer's -merge=1 over the harness keeps the inputs that add coverage."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "corpus" / "target").iterdir())


def merge(*args):
    return subprocess.run([sys.executable, "-m", "vsock_fuzz", "merge", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_redundant_inputs_merge_to_fewer_files(tmp_path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    for d in (a, b):
        d.mkdir()
        for p in SEEDS:
            (d / p.name).write_bytes(p.read_bytes())
    for i in range(20):  # one case under many names
        (b / f"copy-{i}").write_bytes(SEEDS[0].read_bytes())
    r = merge(out, a, b, "--target", "reference")
    assert r.returncode == 0, r.stderr
    kept = list(out.iterdir())
    assert 1 <= len(kept) < len(SEEDS)
    assert f"merged {2 * len(SEEDS) + 20} input(s) from 2 folder(s): {out} holds {len(kept)}" in r.stdout
    # Merging again adds nothing: OUT already has the coverage, and no crash file is left behind.
    again = merge(out, a, "--target", "reference", "-q")
    assert again.returncode == 0 and again.stdout == "", again.stderr
    assert sorted(out.iterdir()) == sorted(kept)
    assert not list(Path.cwd().glob("crash-*"))


def test_a_crashing_target_is_merged(tmp_path):
    # The harness records a crash as the target's answer: the inputs still go through.
    dying = f"cmd:{sys.executable} {ROOT / 'tests' / 'targets' / 'dying.py'} panic src/tx.rs:40:17"
    r = merge(tmp_path / "out", ROOT / "corpus" / "target", "--target", dying)
    assert r.returncode == 0, r.stderr
    assert 1 <= len(list((tmp_path / "out").iterdir())) < len(SEEDS)


def test_missing_in_is_a_usage_error(tmp_path):
    r = merge(tmp_path / "out", ROOT / "corpus" / "target", tmp_path / "nope", "--target", "reference")
    assert r.returncode == 2
    assert f"no such directory: {tmp_path / 'nope'}" in r.stderr


def test_an_unusable_target_is_a_usage_error(tmp_path):
    r = merge(tmp_path / "out", ROOT / "corpus" / "target", "--target", "cmd:/nonexistent/vsock-target")
    assert r.returncode == 2 and "vsock-fuzz merge: error:" in r.stderr


def test_empty_in_gives_an_empty_out(tmp_path):
    (tmp_path / "in").mkdir()
    r = merge(tmp_path / "out", tmp_path / "in", "--target", "reference")
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "out").iterdir()) == []
    assert "merged 0 input(s) from 1 folder(s)" in r.stdout
