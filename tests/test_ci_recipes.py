"""CI recipes: the GitHub workflow's commands are the ones run here (against
the reference and a zoo bug, with small budgets), and the ClusterFuzzLite
build script builds exactly the harnesses in harnesses/."""

import json
import os
import re
import subprocess
import sys
import zipfile
import xml.etree.ElementTree as ET
from pathlib import Path


from vsock_fuzz.cli import report

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "vsock-fuzz.yml"
CFLITE = ROOT / ".clusterfuzzlite"


# --- a reader for the YAML this workflow uses (no YAML library needed) ---------------

def steps(text: str) -> list[dict]:
    """The job's steps as {key: value}; a `run: |` block is joined into one script."""
    out: list[dict] = []
    lines = text.splitlines()
    i = 0
    in_steps = False
    while i < len(lines):
        line = lines[i]
        if line.strip() == "steps:":
            in_steps, step_indent = True, len(line) - len(line.lstrip())
        elif in_steps and line.strip() and len(line) - len(line.lstrip()) <= step_indent:
            in_steps = False
        elif in_steps and line.lstrip().startswith("- "):
            out.append({})
            line = line.replace("- ", "  ", 1)
        if in_steps and out:
            m = re.match(r"^(\s*)([A-Za-z_-]+):\s*(.*)$", line)
            if m and len(m[1]) == step_indent + 4:
                key, value = m[2], m[3]
                if value in ("|", ">"):
                    block = []
                    while i + 1 < len(lines) and (not lines[i + 1].strip()
                                                  or len(lines[i + 1]) - len(lines[i + 1].lstrip()) > len(m[1])):
                        i += 1
                        block.append(lines[i].strip())
                    value = "\n".join(b for b in block if b)
                out[-1][key] = value
        i += 1
    return out


def job_env(text: str) -> dict:
    env, inside = {}, False
    for line in text.splitlines():
        if re.match(r"^    env:\s*$", line):
            inside = True
        elif inside and re.match(r"^      [A-Z_]+:", line):
            key, value = line.strip().split(":", 1)
            env[key] = value.strip().strip('"')
        elif inside:
            inside = False
    return env


def vsock_fuzz_steps():
    return [s for s in steps(WORKFLOW.read_text()) if s.get("run", "").startswith(".venv/bin/vsock-fuzz ")]


def run_step(step: dict, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    """The step's command, verbatim, from the repository root, with the job's env and small budgets."""
    full = dict(os.environ, **job_env(WORKFLOW.read_text()))
    full.update(REPORTS=str(tmp_path / "reports"), FINDINGS=str(tmp_path / "findings"),
                GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"), FUZZ_SECONDS="3", **env)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", step["run"]], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


# --- the workflow ---------------------------------------------------------------------

def test_workflow_shape():
    text = WORKFLOW.read_text()
    assert re.search(r"^on:\n  pull_request:", text, re.M)
    all_steps = steps(text)
    names = [s.get("name") for s in all_steps]
    assert names.index("Install vsock-fuzz") < names.index("Replay corpus/regressions") \
        < names.index("Conformance matrix") < names.index("Fuzz") < names.index("Upload reports and findings")
    install = next(s for s in all_steps if s.get("name") == "Install vsock-fuzz")
    assert install["run"] == "make venv" and re.search(r"^venv:", (ROOT / "Makefile").read_text(), re.M)
    commands = [s["run"].split()[1] for s in vsock_fuzz_steps()]
    assert commands == ["replay", "check", "fuzz"]
    # Every report step runs even when an earlier one failed, so every report is written.
    for s in vsock_fuzz_steps()[1:] + [all_steps[-1]]:
        assert s.get("if") == "${{ !cancelled() }}", s["name"]
    upload = all_steps[-1]
    assert upload["uses"].startswith("actions/upload-artifact@")
    env = job_env(text)
    for s in vsock_fuzz_steps():
        outs = re.findall(r'"\$(REPORTS|FINDINGS)/', s["run"])
        assert outs, s["run"]
        assert "--markdown \"$GITHUB_STEP_SUMMARY\"" in s["run"]
    assert {"TARGET", "FUZZ_SECONDS", "REPORTS", "FINDINGS"} <= set(env)


def test_workflow_uploads_what_the_commands_write():
    text = WORKFLOW.read_text()
    upload_block = text[text.index("actions/upload-artifact@"):]
    assert "${{ env.REPORTS }}" in upload_block and "${{ env.FINDINGS }}" in upload_block


def test_workflow_commands_pass_on_the_reference(tmp_path):
    for step in vsock_fuzz_steps():
        done = run_step(step, tmp_path, TARGET="reference")
        assert done.returncode == 0, f"{step['name']}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    reports = tmp_path / "reports"
    assert sorted(p.name for p in reports.iterdir()) == sorted(
        f"{c}.{e}" for c in ("replay", "check", "fuzz") for e in ("json", "xml"))
    for name in ("replay", "check", "fuzz"):
        rep = json.loads((reports / f"{name}.json").read_text())
        assert report.validate(rep) == [] and rep["status"] == "pass" and rep["command"] == name
        assert ET.parse(reports / f"{name}.xml").getroot().tag == "testsuites"
    summary = (tmp_path / "summary.md").read_text()
    assert [m for m in re.findall(r"^## vsock-fuzz (\w+)", summary, re.M)] == ["replay", "check", "fuzz"]
    assert json.loads((reports / "replay.json").read_text())["stats"]["files"] > 0  # the regressions ran


def test_workflow_fails_on_a_buggy_target(tmp_path):
    # CVE-2019-18960 class: the job must go red at the replay and the matrix.
    bug = f"cmd:{sys.executable} -m vsock_fuzz.zoo.region_end"
    replay, check = vsock_fuzz_steps()[:2]
    for step in (replay, check):
        done = run_step(step, tmp_path, TARGET=bug)
        assert done.returncode == 1, f"{step['name']}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    rep = json.loads((tmp_path / "reports" / "check.json").read_text())
    assert rep["families"]["safety"]["verdict"] == "fail"
    kept = list((tmp_path / "findings" / "check").glob("safety.*.bin"))
    assert kept, "the safety finding's reproducer is in the uploaded directory"


# --- ClusterFuzzLite --------------------------------------------------------------------

def harnesses():
    return sorted(p.stem for p in (ROOT / "harnesses").glob("fuzz_*.py"))


def test_cflite_layout():
    assert re.search(r"^FROM gcr\.io/oss-fuzz-base/base-builder-python\b", (CFLITE / "Dockerfile").read_text(), re.M)
    assert "COPY .clusterfuzzlite/build.sh $SRC/" in (CFLITE / "Dockerfile").read_text()
    assert re.search(r"^language: python$", (CFLITE / "project.yaml").read_text(), re.M)
    assert os.access(CFLITE / "build.sh", os.X_OK)


def test_cflite_build_builds_every_harness_with_seeds_and_dict(tmp_path):
    """build.sh run with stand-ins for the image's tools: what it compiles and ships."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls"
    for tool in ("compile_python_fuzzer", "pip3"):
        (stubs / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n')
        (stubs / tool).chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", OUT=str(out), SRC=str(tmp_path), WORK=str(tmp_path))
    done = subprocess.run(["bash", str(CFLITE / "build.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    compiled = sorted(Path(c.split()[1]).stem for c in calls if c.startswith("compile_python_fuzzer "))
    assert compiled == harnesses() and compiled, "build.sh and harnesses/ agree"
    assert "pip3 install --no-deps ." in calls
    assert any(re.fullmatch(r"pip3 install hypothesis==[0-9.]+", c) for c in calls)
    for name in harnesses():
        assert (out / f"{name}.dict").read_bytes() == (ROOT / "corpus" / "vsock.dict").read_bytes()
        seeds = ROOT / "corpus" / name.removeprefix("fuzz_")
        assert seeds.is_dir(), f"{name} has a seed corpus"
        with zipfile.ZipFile(out / f"{name}_seed_corpus.zip") as z:
            assert sorted(Path(n).name for n in z.namelist() if not n.endswith("/")) == \
                sorted(p.name for p in seeds.iterdir() if p.is_file())


# --- make coverage -----------------------------------------------------------------------

MODEL = ("model/memory", "model/chain", "case/wire", "model/packet", "case/value", "case/binary", "case/layout")


def test_coverage_measures_the_model_with_branches():
    rc = (ROOT / ".coveragerc").read_text()
    include = re.findall(r"^\s+\*/vsock_fuzz/(\w+/\w+)\.py$", rc, re.M)
    assert sorted(include) == sorted(MODEL)
    assert re.search(r"^branch = true$", rc, re.M)
    make = (ROOT / "Makefile").read_text()
    recipe = make[make.index("\ncoverage:"):]
    assert "-m pytest" in recipe and "vsock-fuzz fuzz" in recipe and "scripts/coverage_gaps.py" in recipe


def test_coverage_gaps_names_branches_no_run_reached(tmp_path):
    # Lay out only Linux tx packets under coverage: the rx and unknown-version branches stay unreached.
    (tmp_path / "s.py").write_text("from vsock_fuzz.case.layout import linux_tx, assemble\n"
                                   "assemble(linux_tx('5.x', 100))\n")
    env = dict(os.environ, COVERAGE_FILE=str(tmp_path / ".coverage"))
    rc = f"--rcfile={ROOT / '.coveragerc'}"
    for args in (["run", rc, str(tmp_path / "s.py")], ["combine", rc, "-q"],
                 ["json", rc, "-q", "-o", str(tmp_path / "c.json")]):
        subprocess.run([sys.executable, "-m", "coverage", *args], cwd=ROOT, env=env, check=True, capture_output=True)
    done = subprocess.run([sys.executable, "scripts/coverage_gaps.py", str(tmp_path / "c.json")], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"\d+ of \d+ model branches reached by no engine", lines[-1])
    source = (ROOT / "vsock_fuzz" / "case" / "layout.py").read_text().splitlines()
    version_6_2 = next(i for i, l in enumerate(source, 1) if 'version == "6.2"' in l and "elif" in l)
    assert any(l.startswith(f"vsock_fuzz/case/layout.py:{version_6_2} -> ") for l in lines)
    # A branch the run took is not listed: 5.x was laid out.
    version_5 = next(i for i, l in enumerate(source, 1) if 'if version == "5.x"' in l)
    assert not any(l.startswith(f"vsock_fuzz/case/layout.py:{version_5} -> {version_5 + 1} ") for l in lines)
