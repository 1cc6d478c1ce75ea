"""action.yml run as a runner runs a composite action, from a scratch repository: its steps in
order, inputs and contexts substituted, `if:` evaluated, the GITHUB_* files set and read back,
`uses:` steps skipped (setup-python, the cache, the uploads). The install step is replaced by
this venv on PATH, the one thing it leaves behind. A first run, with the regressions folder
missing or empty, must pass on a correct device."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vsock_fuzz.cli import report

ROOT = Path(__file__).resolve().parent.parent
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.S)


class Runner:
    """The part of the Actions runner a composite action needs: contexts, expressions, files."""

    def __init__(self, tmp: Path, workspace: Path, inputs: dict):
        spec = yaml.safe_load((ROOT / "action.yml").read_text())
        self.steps, self.outputs = spec["runs"]["steps"], spec.get("outputs", {})
        values = {k: str(v.get("default", "")) for k, v in spec["inputs"].items()}
        unknown = set(inputs) - set(values)
        assert not unknown, f"inputs the action does not declare: {unknown}"
        values.update(inputs)
        (tmp / "runner-temp").mkdir()
        self.ctx = {"inputs": values, "runner": {"temp": str(tmp / "runner-temp"), "os": "Linux"},
                    "github": {"action_path": str(ROOT), "workspace": str(workspace), "run_id": "1",
                               "run_attempt": "1", "event_name": "pull_request"}}
        self.workspace, self.failed = workspace, False
        self.files = {name: tmp / name.lower() for name in
                      ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV", "GITHUB_PATH")}
        for f in self.files.values():
            f.touch()
        # What "Install vsock-fuzz" leaves behind: vsock-fuzz and its python first on PATH.
        self.files["GITHUB_PATH"].write_text(f"{Path(sys.executable).parent}\n")

    def value(self, expr: str):
        expr = expr.strip()
        if "||" in expr:
            return next((v for v in (self.value(p) for p in expr.split("||")) if v), False)
        if "&&" in expr:
            return all(self.value(p) for p in expr.split("&&"))
        calls = {"always()": True, "!cancelled()": True, "success()": not self.failed, "failure()": self.failed}
        if expr in calls:
            return calls[expr]
        if m := re.fullmatch(r"(.+?)\s*(==|!=)\s*(.+)", expr):
            return (str(self.value(m[1])) == str(self.value(m[3]))) == (m[2] == "==")
        if m := re.fullmatch(r"'([^']*)'", expr):
            return m[1]
        scope, _, key = expr.partition(".")
        assert scope in self.ctx and key in self.ctx[scope], f"an expression this runner cannot evaluate: {expr!r}"
        return self.ctx[scope][key]

    def sub(self, text: str) -> str:
        return EXPR.sub(lambda m: str(self.value(m[1])), str(text))

    def env(self, step: dict) -> dict:
        path = [p for p in self.files["GITHUB_PATH"].read_text().splitlines() if p][::-1]
        env = dict(os.environ, PATH=os.pathsep.join(path + [os.environ["PATH"]]), GITHUB_ACTIONS="true",
                   GITHUB_WORKSPACE=str(self.workspace), GITHUB_ACTION_PATH=str(ROOT),
                   RUNNER_TEMP=self.ctx["runner"]["temp"], **{k: str(v) for k, v in self.files.items()})
        env.update(line.split("=", 1) for line in self.files["GITHUB_ENV"].read_text().splitlines() if "=" in line)
        env.update({k: self.sub(v) for k, v in step.get("env", {}).items()})
        return env

    def run(self) -> dict:
        """{step name: CompletedProcess} of the `run:` steps whose `if:` held, in order."""
        done = {}
        for step in self.steps:
            name = step.get("name", step.get("uses"))
            cond = step.get("if", "success()")
            if "uses" in step or name == "Install vsock-fuzz" or not self.value(EXPR.sub(r"\1", cond)):
                continue
            assert step.get("shell") == "bash", name
            p = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                               cwd=self.workspace / step.get("working-directory", "."), env=self.env(step),
                               capture_output=True, text=True, timeout=180)
            done[name] = p
            self.failed |= p.returncode != 0
        return done


def scratch_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README.md").write_text("a VMM\n")
    return repo


@pytest.mark.parametrize("regressions", ["missing", "empty", "gitkeep only"])
def test_first_run_passes_with_no_regressions_yet(tmp_path, regressions):
    repo = scratch_repo(tmp_path)
    folder = repo / "fuzz" / "vsock-regressions"
    if regressions != "missing":
        folder.mkdir(parents=True)
    if regressions == "gitkeep only":
        (folder / ".gitkeep").touch()
    runner = Runner(tmp_path, repo, {"target": "reference", "regressions": "fuzz/vsock-regressions",
                                     "fuzz-seconds": "3", "fuzz-options": "--runs 400 --jobs 1"})
    done = runner.run()
    assert list(done) == ["Corpus cache key", "Replay the regressions", "Conformance matrix", "Fuzz",
                          "Merge the fuzz corpus"]
    for name, p in done.items():
        assert p.returncode == 0, f"{name}: {p.stdout[-2000:]}{p.stderr[-2000:]}"
    assert re.search(r"^::notice title=vsock-fuzz replay::no case files in fuzz/vsock-regressions",
                     done["Replay the regressions"].stdout, re.M)
    reports = repo / "vsock-fuzz" / "reports"
    assert not (reports / "replay.json").exists()  # nothing replayed, nothing reported as an error
    for name in ("check", "fuzz"):
        rep = json.loads((reports / f"{name}.json").read_text())
        assert report.validate(rep) == [] and rep["status"] == "pass", name
    # fuzz-options reach the campaign only (check refuses --runs with exit 2).
    assert "--runs" in json.loads((reports / "fuzz.json").read_text())["argv"]
    summary = runner.files["GITHUB_STEP_SUMMARY"].read_text()
    assert re.findall(r"^## vsock-fuzz (\w+)", summary, re.M) == ["check", "fuzz"]
    # The cache key's prefix is stable per target; the corpus saved under it is the grown one merged.
    written = runner.files["GITHUB_OUTPUT"].read_text()
    assert re.search(r"^prefix=vsock-fuzz-corpus-default-[0-9a-f]{16}-$", written, re.M), written
    grown = int(re.search(r"^corpus: (\d+) file", done["Fuzz"].stdout, re.M)[1])
    merged = re.search(r"^merged (\d+) input\(s\) from 1 folder\(s\): \S+ holds (\d+)$",
                       done["Merge the fuzz corpus"].stdout, re.M)
    assert merged, done["Merge the fuzz corpus"].stdout + done["Merge the fuzz corpus"].stderr
    saved = len(list((repo / "vsock-fuzz" / "corpus").iterdir()))
    assert int(merged[1]) == grown and saved == int(merged[2]) <= grown and (saved > 0) == (grown > 0)
    # What the action's outputs name exists for the steps that follow it.
    for out in runner.outputs.values():
        assert (repo / runner.sub(out["value"])).is_dir(), out


def test_regressions_present_are_replayed_from_a_scratch_repository(tmp_path):
    repo = scratch_repo(tmp_path)
    folder = repo / "fuzz" / "vsock-regressions"
    folder.mkdir(parents=True)
    (folder / "README.md").write_text("kept reproducers\n")  # not a case file
    kept = sorted((ROOT / "corpus" / "regressions").glob("*.bin"))[:2]
    for p in kept:
        (folder / p.name).write_bytes(p.read_bytes())
    done = Runner(tmp_path, repo, {"target": "reference", "regressions": "fuzz/vsock-regressions",
                                   "fuzz-seconds": "0"}).run()
    assert list(done) == ["Replay the regressions", "Conformance matrix"]
    replay = done["Replay the regressions"]
    assert replay.returncode == 0 and "::notice" not in replay.stdout, replay.stdout + replay.stderr
    rep = json.loads((repo / "vsock-fuzz" / "reports" / "replay.json").read_text())
    assert rep["status"] == "pass" and rep["stats"]["files"] == len(kept)
