"""CI recipes: the reusable action (action.yml) has its `run:` steps run here, with the
inputs substituted, against the reference and a zoo bug with small budgets; the
repository's workflow uses that action; the ClusterFuzzLite build script builds exactly
the harnesses in harnesses/ (and bakes in the adapter it is told), and the workflow files
a project copies use it."""

import json
import os
import re
import subprocess
import sys
import zipfile
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from vsock_fuzz.cli import report

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
WORKFLOW = ROOT / ".github" / "workflows" / "vsock-fuzz.yml"
CFLITE = ROOT / ".clusterfuzzlite"
BUG = f"cmd:{sys.executable} -m vsock_fuzz.zoo.region_end"  # CVE-2019-18960 class


def load(path: Path) -> dict:
    # PyYAML reads a bare `on:` key as True (YAML 1.1); give it back its name.
    doc = yaml.safe_load(path.read_text())
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def action() -> dict:
    return load(ACTION)


def step(name: str) -> dict:
    return next(s for s in action()["runs"]["steps"] if s.get("name") == name)


# --- evaluating the action's steps as the runner does (the expressions it uses) ---------

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def value(expr: str, ctx: dict):
    """One expression of the forms action.yml uses: inputs.X, runner.temp, !cancelled(), always(),
    A != 'B', A == 'B' and &&."""
    parts = [p.strip() for p in expr.split("&&")]
    if len(parts) > 1:
        return all(value(p, ctx) for p in parts)
    if expr in ("!cancelled()", "always()"):
        return True
    m = re.fullmatch(r"(\S+)\s*(==|!=)\s*'([^']*)'", expr)
    if m:
        return (str(value(m[1], ctx)) == m[3]) == (m[2] == "==")
    if re.fullmatch(r"[a-z]+\.[a-z-]+", expr):
        scope, key = expr.split(".")
        return ctx[scope][key]
    raise AssertionError(f"an expression this test cannot evaluate: {expr!r}")


def substitute(text: str, ctx: dict) -> str:
    return EXPR.sub(lambda m: str(value(m[1], ctx)), text)


def condition(s: dict, ctx: dict) -> bool:
    cond = s.get("if")
    if cond is None:
        return True
    m = EXPR.fullmatch(cond.strip())
    return bool(value(m[1] if m else cond, ctx))


def run_action(tmp_path: Path, cwd: Path, **inputs) -> dict:
    """Every `run:` step of the action after the install (vsock-fuzz is already on PATH: this
    venv), with the inputs substituted, in order, as the runner runs a composite action;
    returns {step name: CompletedProcess} for the steps whose condition held."""
    spec = action()
    values = {k: str(v.get("default", "")) for k, v in spec["inputs"].items()}
    values.update({k: str(v) for k, v in inputs.items()})
    temp = tmp_path / "runner-temp"
    temp.mkdir(exist_ok=True)
    ctx = {"inputs": values, "runner": {"temp": str(temp)}}
    base = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", RUNNER_TEMP=str(temp),
                GITHUB_ACTION_PATH=str(ROOT), GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
                GITHUB_PATH=str(tmp_path / "github_path"), GITHUB_OUTPUT=str(tmp_path / "github_output"))
    done = {}
    for s in spec["runs"]["steps"]:
        if "run" not in s or s.get("name") == "Install vsock-fuzz" or not condition(s, ctx):
            continue
        assert s.get("shell") == "bash", s["name"]
        env = dict(base, **{k: substitute(str(v), ctx) for k, v in s.get("env", {}).items()})
        done[s["name"]] = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", s["run"]],
                                         cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return done


def why(p: subprocess.CompletedProcess) -> str:
    return p.stdout[-2000:] + p.stderr[-2000:]


# --- the action -------------------------------------------------------------------------

def test_action_shape():
    spec = action()
    assert spec["runs"]["using"] == "composite"
    assert {"target", "device-options", "fuzz-seconds", "regressions", "fail-on"} <= set(spec["inputs"])
    assert spec["inputs"]["target"]["required"] is True
    steps = spec["runs"]["steps"]
    names = [s.get("name", s.get("uses")) for s in steps]
    order = ["Install vsock-fuzz", "Restore the fuzz corpus", "Replay the regressions", "Conformance matrix",
             "Fuzz", "Merge the fuzz corpus", "Save the fuzz corpus", "Upload reports, findings and corpus"]
    assert [n for n in names if n in order] == order
    assert steps[0]["uses"].startswith("actions/setup-python@")
    # Installed from the action's own checkout: the ref the caller names pins the version.
    install = step("Install vsock-fuzz")["run"]
    assert re.search(r'pip install -q "\$GITHUB_ACTION_PATH"$', install, re.M)
    assert 'echo "$VENV/bin" >> "$GITHUB_PATH"' in install
    # Every step after the install runs even when an earlier one found something, and the
    # steps that keep the results run even when the job was cancelled (a timeout).
    keep = {"Merge the fuzz corpus", "Save the fuzz corpus", "Upload reports, findings and corpus",
            "Upload SARIF to code scanning"}
    for s in steps[2:]:
        start = "${{ always()" if s["name"] in keep else "${{ !cancelled()"
        assert s.get("if", "").startswith(start) or s["name"] == "Restore the fuzz corpus", s["name"]
    # Inputs reach scripts through env only (no ${{ }} inside a script).
    for s in steps:
        if "run" in s:
            assert "${{" not in s["run"], s["name"]
    # The corpus restored, saved and uploaded is the visible folder the fuzz step fills.
    restore, save = step("Restore the fuzz corpus"), step("Save the fuzz corpus")
    assert restore["uses"].startswith("actions/cache/restore@") and save["uses"].startswith("actions/cache/save@")
    assert restore["with"]["path"] == save["with"]["path"] == "${{ inputs.output }}/corpus"
    assert restore["with"]["key"] == save["with"]["key"] and save["with"]["key"].startswith(restore["with"]["restore-keys"])
    # One cache line per target: the prefix the next run restores from names the target (hashed).
    assert restore["with"]["restore-keys"] == "${{ steps.corpus-key.outputs.prefix }}"
    assert "$TARGET" in step("Corpus cache key")["run"] and "$CACHE_KEY" in step("Corpus cache key")["run"]
    upload = step("Upload reports, findings and corpus")
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert upload["with"]["path"].splitlines() == [f"${{{{ inputs.output }}}}/{d}" for d in ("reports", "findings", "corpus")]


def test_workflow_uses_the_action():
    wf = load(WORKFLOW)
    assert "pull_request" in wf["on"]
    (job,) = wf["jobs"].values()
    uses = [s for s in job["steps"] if s.get("uses") == "./"]
    assert len(uses) == 1 and job["steps"][0]["uses"].startswith("actions/checkout@")
    assert set(uses[0]["with"]) <= set(action()["inputs"])
    assert uses[0]["with"]["target"] == "reference"
    assert (ROOT / uses[0]["with"]["regressions"]).is_dir()


def test_action_passes_on_the_reference(tmp_path):
    """The repository's own workflow, its inputs as it gives them (a shorter campaign)."""
    (job,) = load(WORKFLOW)["jobs"].values()
    given = next(s for s in job["steps"] if s.get("uses") == "./")["with"]
    out = tmp_path / "vsock-fuzz"
    done = run_action(tmp_path, ROOT, **{**given, "fuzz-seconds": "3", "output": str(out)})
    assert list(done) == ["Corpus cache key", "Replay the regressions", "Conformance matrix", "Fuzz",
                          "Merge the fuzz corpus"]
    for name, p in done.items():
        assert p.returncode == 0, f"{name}: {why(p)}"
    reports = out / "reports"
    assert sorted(p.name for p in reports.iterdir()) == sorted(
        f"{c}.{e}" for c in ("replay", "check", "fuzz") for e in ("json", "xml", "sarif"))
    for name in ("replay", "check", "fuzz"):
        rep = json.loads((reports / f"{name}.json").read_text())
        assert report.validate(rep) == [] and rep["status"] == "pass" and rep["command"] == name
        assert ET.parse(reports / f"{name}.xml").getroot().tag == "testsuites"
        assert json.loads((reports / f"{name}.sarif").read_text())["version"] == "2.1.0"
    summary = (tmp_path / "summary.md").read_text()
    assert re.findall(r"^## vsock-fuzz (\w+)", summary, re.M) == ["replay", "check", "fuzz"]
    assert json.loads((reports / "replay.json").read_text())["stats"]["files"] > 0  # the regressions ran
    # The grown corpus, merged, is in the visible folder the action caches and uploads.
    kept = {p.name for p in (out / "corpus").iterdir()}
    assert kept and kept <= {p.name for p in (out / "findings" / "fuzz" / ".corpus" / "atheris").iterdir()}
    assert "corpus: " in done["Fuzz"].stdout


def test_action_fails_on_a_buggy_target(tmp_path):
    # The replay and the matrix go red; regressions and output relative to the caller's workspace.
    work = tmp_path / "repo"
    (work / "regressions").mkdir(parents=True)
    for p in (ROOT / "corpus" / "regressions").glob("safety.slice-in-region-*"):
        (work / "regressions" / p.name).write_bytes(p.read_bytes())
    assert list((work / "regressions").iterdir())
    done = run_action(tmp_path, work, target=BUG, regressions="regressions", **{"fuzz-seconds": "0"})
    assert list(done) == ["Replay the regressions", "Conformance matrix"]  # fuzz-seconds 0: no campaign
    for name, p in done.items():
        assert p.returncode == 1, f"{name}: {why(p)}"
    reports = work / "vsock-fuzz" / "reports"
    rep = json.loads((reports / "check.json").read_text())
    assert rep["families"]["safety"]["verdict"] == "fail"
    kept = list((work / "vsock-fuzz" / "findings" / "check").glob("safety.*.bin"))
    assert kept, "the safety finding's reproducer is in the uploaded directory"
    log = json.loads((reports / "check.sarif").read_text())
    uris = [loc["physicalLocation"]["artifactLocation"]["uri"]
            for r in log["runs"][0]["results"] for loc in r.get("locations", [])]
    assert any(u.startswith("vsock-fuzz/findings/check/safety.") and (work / u).is_file() for u in uris)
    assert json.loads((reports / "replay.json").read_text())["families"]["safety"]["verdict"] == "fail"


def test_action_device_options_reach_every_command(tmp_path):
    """device-options split into arguments of each command: a bad one fails each step with exit 2."""
    done = run_action(tmp_path, tmp_path, target="reference", regressions=str(ROOT / "corpus" / "regressions"),
                      **{"device-options": "--max-data-size 0", "fuzz-seconds": "1"})
    merge = done.pop("Merge the fuzz corpus")
    assert list(done) == ["Corpus cache key", "Replay the regressions", "Conformance matrix", "Fuzz"]
    for name, p in list(done.items())[1:]:
        assert p.returncode == 2 and "max-data-size" in p.stderr, f"{name}: {why(p)}"
    # A merge that cannot run keeps the corpus as it grew, with a warning, and fails nothing more.
    assert merge.returncode == 0 and "max-data-size" in merge.stderr and "::warning" in merge.stdout, why(merge)


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


def test_cflite_build_bakes_in_the_adapter_it_is_told(tmp_path):
    """VSOCK_FUZZ_TARGET set at build time becomes fuzz_target's default target: the built
    harness, run with no VSOCK_FUZZ_TARGET, fuzzes that device (a zoo bug: it stops on it)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls"
    (stubs / "compile_python_fuzzer").write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    (stubs / "pip3").write_text("#!/bin/sh\n")
    for tool in ("compile_python_fuzzer", "pip3"):
        (stubs / tool).chmod(0o755)
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir(), work.mkdir()
    spec = "py:vsock_fuzz.zoo.region_end:parse"
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", OUT=str(out), SRC=str(tmp_path), WORK=str(work),
               VSOCK_FUZZ_TARGET=spec)
    done = subprocess.run(["bash", str(CFLITE / "build.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    built = [Path(c.split()[0]) for c in log.read_text().splitlines()]
    baked = next(p for p in built if p.stem == "fuzz_target")
    assert baked == work / "baked" / "fuzz_target.py"
    assert [p for p in built if p.stem != "fuzz_target"] == \
        [Path("harnesses") / f"{h}.py" for h in harnesses() if h != "fuzz_target"]
    text = baked.read_text()
    assert text.startswith("#!/usr/bin/env python3\n") and f'"VSOCK_FUZZ_TARGET", "{spec}")' in text
    assert text.splitlines()[2:] == (ROOT / "harnesses" / "fuzz_target.py").read_text().splitlines()[1:]
    run_env = {k: v for k, v in os.environ.items() if k != "VSOCK_FUZZ_TARGET"}
    fuzzed = subprocess.run([sys.executable, str(baked), "-runs=3000", "-seed=1", str(ROOT / "corpus" / "target")],
                            cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=120)
    assert fuzzed.returncode != 0 and "safety." in fuzzed.stdout + fuzzed.stderr, why(fuzzed)


def test_cflite_workflows_a_project_copies():
    modes = {}
    for path in sorted((CFLITE / "workflows").glob("*.yml")):
        wf = load(path)
        (job,) = wf["jobs"].values()
        build, run = job["steps"]
        assert build["uses"] == "google/clusterfuzzlite/actions/build_fuzzers@v1"
        assert build["with"]["language"] == load(CFLITE / "project.yaml")["language"] == "python"
        assert run["uses"] == "google/clusterfuzzlite/actions/run_fuzzers@v1"
        assert int(run["with"]["fuzz-seconds"]) > 0
        modes[run["with"]["mode"]] = set(wf["on"])
    assert modes == {"code-change": {"pull_request"}, "batch": {"schedule", "workflow_dispatch"}}


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
