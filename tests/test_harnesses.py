"""The atheris harnesses: they run standalone under plain libFuzzer flags, hold on the
reference, and turn a finding into a crash artifact whose message names the oracle."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vsock_fuzz.case.binary import decode, encode_layout
from vsock_fuzz.case.corpus import read_case
from vsock_fuzz.engines.percase import FindingError, chain_one_input, force_queue, one_input
from vsock_fuzz.case.layout import linux_rx, linux_tx
from vsock_fuzz.oracles import evaluate
from vsock_fuzz.targets import open_target

ROOT = Path(__file__).resolve().parent.parent
HARNESSES = ROOT / "harnesses"


def run_harness(name, *flags, cwd=None, timeout=120):
    # -merge, -fork and -jobs run the harness file again as a program: its
    # `#!/usr/bin/env python3` must find this interpreter (with atheris) first.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return subprocess.run([sys.executable, str(HARNESSES / f"fuzz_{name}.py"), *map(str, flags)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, env={**os.environ, "PATH": path})


@pytest.mark.parametrize("path", sorted(HARNESSES.glob("fuzz_*.py")), ids=lambda p: p.name)
def test_harness_usage_names_its_own_file_and_corpus(path):
    usage = [ln for ln in path.read_text().splitlines() if "python harnesses/" in ln]
    assert usage and all(f"harnesses/{path.name} " in ln for ln in usage)
    assert all(f"corpus/{path.stem.removeprefix('fuzz_')}" in ln for ln in usage)


@pytest.mark.parametrize("name", ["tx", "rx", "chain", "target"])
def test_harness_runs_standalone_and_holds_on_the_reference(name, tmp_path):
    corpus = ROOT / "corpus" / name
    (tmp_path / "new").mkdir()  # libFuzzer adds inputs to the first corpus dir: not the committed seeds
    r = run_harness(name, "-runs=3000", "-seed=1", f"-artifact_prefix={tmp_path}/", tmp_path / "new",
                    *([corpus] if corpus.is_dir() else []), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 3000 runs" in r.stderr
    assert re.search(r"cov: [1-9]\d+ ", r.stderr)  # instrumented: coverage guides the mutation
    assert not list(tmp_path.glob("crash-*"))


def test_crash_artifact_holds_the_input_and_names_the_oracle(tmp_path):
    # queue_zero (virtio-queue #173) crashes on a queue of size 0: found in a second or two.
    spec = "py:vsock_fuzz.zoo.queue_zero:parse"
    r = run_harness("target", f"--target={spec}", "-seed=1", "-runs=500000", "-max_total_time=60",
                    f"-artifact_prefix={tmp_path}/", cwd=tmp_path)
    assert r.returncode != 0
    assert "FindingError: safety.crash (critical" in r.stdout + r.stderr  # atheris prints it on stdout
    crashes = list(tmp_path.glob("crash-*"))
    assert len(crashes) == 1
    # The artifact is the input: replayed through the same target, the same oracle fires.
    case = read_case(str(crashes[0])).case
    _, findings = evaluate(open_target(spec), case)
    assert "safety.crash" in {f.oracle for f in findings}


def test_libfuzzer_flags_dict_merge_and_fork(tmp_path):
    seeds, merged = tmp_path / "seeds", tmp_path / "merged"
    seeds.mkdir()
    merged.mkdir()
    for i, lay in enumerate([linux_tx("5.x", 16), linux_tx("6.2", 0), linux_tx("6.17", 40000)]):
        (seeds / f"s{i}").write_bytes(encode_layout(lay))
    r = run_harness("tx", "-dict=" + str(ROOT / "corpus" / "vsock.dict"), "-max_total_time=2", "-seed=3", seeds, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Dictionary:" in r.stderr  # the dictionary was parsed
    r = run_harness("tx", "-merge=1", merged, seeds, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list(merged.iterdir())) >= 1  # distinct coverage kept
    r = run_harness("rx", "-fork=1", "-runs=2000", "-seed=2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "fork" in r.stderr.lower()


def test_jobs_and_workers(tmp_path):
    r = run_harness("chain", "-jobs=2", "-workers=2", "-runs=1000", "-seed=4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    logs = sorted(tmp_path.glob("fuzz-*.log"))
    assert len(logs) == 2
    assert all("Done 1000 runs" in log.read_text() for log in logs)


def test_force_queue_keeps_a_harness_on_its_queue():
    for data in (b"", b"\x01", bytes(range(256)), encode_layout(linux_tx("5.x", 8)), encode_layout(linux_rx("6.2"))):
        assert decode(force_queue(data, "tx")).queue == "tx"
        assert decode(force_queue(data, "rx")).queue == "rx"
        assert force_queue(data, None) == data
    # Only the queue bit changes: a tx layout forced to tx is the same case.
    tx = encode_layout(linux_tx("6.2", 8))
    assert decode(force_queue(tx, "tx")) == decode(tx)


def test_one_input_raises_only_at_or_above_fail_on():
    lone_head = encode_layout(linux_tx("6.2", 64))  # one descriptor: vm-virtio #204 rejects it
    one_input("reference")(lone_head)  # the model keeps every rule
    with pytest.raises(FindingError, match=r"^interop\.linux-rejected \(error"):
        one_input("py:vsock_fuzz.zoo.two_desc:parse")(lone_head)
    one_input("py:vsock_fuzz.zoo.two_desc:parse", fail_on="critical")(lone_head)


def test_chain_harness_fires_on_an_unbounded_walk(monkeypatch):
    data = encode_layout(linux_tx("5.x", 8))
    chain_one_input()(data)  # the real walk is bounded

    import vsock_fuzz.model.chain as chain
    real = chain.walk

    def unbounded(mem, table, size, head, **kw):  # a walk that lost its ttl: repeats the chain
        descs = list(real(mem, table, size, head, **kw))
        for _ in range(size + chain.MAX_INDIRECT_ENTRIES + 1):
            yield descs[0]
    monkeypatch.setattr(chain, "walk", unbounded)
    with pytest.raises(FindingError, match=r"^chain\.bounded-walk"):
        chain_one_input()(data)
