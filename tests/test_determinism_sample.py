"""Determinism by sample (oracles/run.py evaluate, engines/percase.DETERMINISM_EVERY): a campaign
asks the target a second time on one case in 16 and on every case with a finding, and still
finds a state leak, whether the leak shows otherwise (credit_leak) or only on a second ask."""

import json
import subprocess
import sys

from vsock_fuzz.case.layout import assemble, linux_tx
from vsock_fuzz.oracles import evaluate
from vsock_fuzz.targets import open_target


class Counting:
    """A target that counts its asks, answering as the wrapped one."""

    def __init__(self, spec: str):
        self.inner, self.asks = open_target(spec), 0
        self.device = self.inner.device

    def parse(self, case):
        self.asks += 1
        return self.inner.parse(case)


def test_a_clean_case_is_asked_again_on_the_schedule_a_finding_always():
    target = Counting("py:vsock_fuzz.zoo.multi_frag:parse")
    clean = assemble(linux_tx("6.2", 64))
    for _ in range(32):
        evaluate(target, clean, determinism=16)
    assert target.asks == 32 + 2  # one in 16 asked twice
    broken = assemble(linux_tx("6.17", 40000))  # multi_frag refuses it: a finding every time
    target.asks = 0
    for _ in range(4):
        _, found = evaluate(target, broken, determinism=16)
        assert found
    # The case and its second ask each time; its content probe in the pre-6.2 layout the first
    # time only (the target's answer to one probe is kept: oracles.run._probe_asker).
    assert target.asks == 4 * 2 + 1
    target.asks = 0
    evaluate(target, clean, determinism=True)
    assert target.asks == 2  # check and replay: every case


def test_a_leak_only_a_second_ask_shows_is_found_by_a_campaign(tmp_path):
    """tests/targets/stale_state.py answers every case right the first time."""
    report = tmp_path / "r.json"
    run = subprocess.run([sys.executable, "-m", "vsock_fuzz", "fuzz", "--target",
                          f"cmd:{sys.executable} tests/targets/stale_state.py", "--runs", "2000",
                          "--minimize-time", "0", "--out", str(tmp_path / "out"), "--json", str(report),
                          "--stop-on", "determinism"], capture_output=True, text=True, timeout=120)
    assert report.exists(), run.stdout + run.stderr
    found = {f["oracle"] for f in json.loads(report.read_text())["findings"]}
    assert "determinism.repeat" in found, run.stdout[-2000:]
