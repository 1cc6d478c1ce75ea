"""Polling (docs/protocol-extensions.md): hello asks a target to poll its input for POLL_US
before it sleeps on it, only when the target has a CPU of its own; a campaign asks it of its
workers' targets only when every one has."""

import json
import sys

import pytest

from vsock_fuzz.case.layout import assemble, linux_tx
from vsock_fuzz.engines.campaign import Campaign
from vsock_fuzz.engines.options import Options
from vsock_fuzz.targets import CommandTarget, base

# Writes each request line it reads to the file named by argv[1]; answers hello, refuses cases.
RECORDER = """
import json, sys
log = open(sys.argv[1], "a")
for line in sys.stdin:
    req = json.loads(line)
    log.write(line); log.flush()
    if req.get("op") == "hello":
        print(json.dumps({"ok": True, "protocol": 1}), flush=True)
    else:
        print(json.dumps({"id": req.get("id"), "ok": False, "error": "Refused"}), flush=True)
"""


@pytest.fixture
def cpus(monkeypatch):
    def set_cpus(n):
        monkeypatch.setattr(base.os, "sched_getaffinity", lambda pid: set(range(n)))
    return set_cpus


def test_poll_is_asked_only_when_each_target_has_a_cpu_of_its_own(cpus):
    cpus(2)
    assert (base.poll_us(1), base.poll_us(2)) == (base.POLL_US, 0)
    cpus(1)
    assert base.poll_us(1) == 0
    cpus(4)
    assert (base.poll_us(2), base.poll_us(3)) == (base.POLL_US, 0)


def hello_of(tmp_path, **kw) -> dict:
    log = tmp_path / "requests"
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    t = CommandTarget([sys.executable, str(script), str(log)], modes=(), **kw)
    try:
        assert t.parse(assemble(linux_tx("6.2", 8))).error == "Refused"
    finally:
        t.close()
    return json.loads(log.read_text().splitlines()[0])


def test_hello_asks_for_polling_when_told_and_not_otherwise(tmp_path, cpus):
    assert hello_of(tmp_path, poll=200)["poll_us"] == 200
    (tmp_path / "requests").unlink()
    assert "poll_us" not in hello_of(tmp_path, poll=0)
    (tmp_path / "requests").unlink()
    assert "poll_us" not in hello_of(tmp_path, poll=200, rlimit_cpu=60)  # polls would spend its CPU budget
    cpus(1)
    (tmp_path / "requests").unlink()
    assert "poll_us" not in hello_of(tmp_path)  # no CPU to spare: not asked


def test_a_campaign_asks_for_polling_when_every_workers_target_has_a_cpu(tmp_path, cpus):
    cpus(2)
    one = Campaign(Options("cmd:true", out=str(tmp_path / "a")))
    two = Campaign(Options("cmd:true", out=str(tmp_path / "b"), jobs=2))
    assert (one.o.target_options["poll"], two.o.target_options["poll"]) == (base.POLL_US, 0)
    both = Campaign(Options("cmd:true", out=str(tmp_path / "d"), engine="both"))  # two workers for one job
    assert both.o.target_options["poll"] == 0
    told = Campaign(Options("cmd:true", out=str(tmp_path / "c"), target_options={"poll": 0}))
    assert told.o.target_options["poll"] == 0  # an explicit choice stands
