"""Each zoo bug is caught by the Hypothesis suite through the right oracle, in-process and
as a protocol v1 program.

The search draws from every adversarial family at once (`strategies.cases()`),
as a campaign would, derandomized so the figures printed (examples and seconds
to detection, `pytest -s`) are the same on every run.
"""

import importlib
import shlex
import sys
import time

import pytest
from hypothesis import Phase, given, settings

from vsock_fuzz.case.wire import F_WRITE
from vsock_fuzz.case.wire import HEADER_SIZE
from vsock_fuzz.case.layout import Buf, Layout, assemble
from vsock_fuzz.oracles import evaluate
from vsock_fuzz.engines.strategies import cases
from vsock_fuzz.targets import open_target
from vsock_fuzz.zoo import BUG, ORACLE, ZOO

LIMIT = 3000  # examples; every zoo bug is found well before (see the printed figures)
FOUND: dict[str, object] = {}


class Caught(Exception):
    def __init__(self, finding):
        super().__init__(finding.message)
        self.finding = finding


def hunt(spec: str, oracle: str):
    """Draw cases until `oracle` fires on the target: (finding, examples, seconds), or None."""
    target = open_target(spec, timeout=1.0)
    count = 0
    caught = []

    @settings(max_examples=LIMIT, database=None, derandomize=True, phases=[Phase.generate])
    @given(cases())
    def probe(case):
        nonlocal count
        count += 1
        _, findings = evaluate(target, case)
        for f in findings:
            if f.oracle == oracle:
                caught.append((f, count, time.perf_counter() - start))
                raise Caught(f)

    start = time.perf_counter()
    try:
        probe()
    except Exception:  # Caught, or Hypothesis's report that a stateful target did not fail again
        if not caught:
            raise
    finally:
        target.close()
    return caught[0] if caught else None


def test_zoo_lists_each_module_once_with_its_oracle():
    names = [name for name, _, _ in ZOO]
    assert len(names) == len(set(names)) and set(names) == set(ORACLE) == set(BUG)
    for name, module, family in ZOO:
        mod = importlib.import_module(module)
        assert callable(mod.parse)
        assert ORACLE[name].split(".")[0] == family


@pytest.mark.parametrize("name,module,family", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_bug_is_caught_in_process(name, module, family):
    hit = hunt(f"py:{module}:parse", ORACLE[name])
    assert hit is not None, f"{name}: {ORACLE[name]} never fired in {LIMIT} examples"
    finding, examples, seconds = hit
    assert finding.family == family
    FOUND[name] = finding
    print(f"\nzoo {name}: {ORACLE[name]} after {examples} examples, {seconds:.2f}s ({BUG[name]})")


@pytest.mark.parametrize("name,module,family", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_program_shows_the_same_bug(name, module, family):
    """The case found in-process makes the program (cmd:) break the same rule:
    for loop_hang that is a real hang, caught by the client's timeout."""
    finding = FOUND.get(name) or (hunt(f"py:{module}:parse", ORACLE[name]) or (None,))[0]
    assert finding is not None
    target = open_target(f"cmd:{shlex.join([sys.executable, '-m', module])}", timeout=1.0)
    try:
        if name == "credit_leak":
            # A state leak needs a history: a packet that leaves the credit part-used, then the
            # found case a few times.
            target.parse(assemble(Layout("rx", (Buf(HEADER_SIZE, F_WRITE), Buf(3000, F_WRITE)))))
            findings = []
            for _ in range(5):
                answer, more = evaluate(target, finding.case)
                findings += more
        else:
            answer, findings = evaluate(target, finding.case)
    finally:
        target.close()
    assert ORACLE[name] in {f.oracle for f in findings}, (answer, [f.message for f in findings])
    if name == "loop_hang":
        assert answer.error_class == "hang" and "no answer" in answer.detail


# What `check` names at error and above for each zoo device, one root cause per bug at its own
# severity: its planted bug, in every part of the answer and on every queue it shows on, and,
# for a device taking its tx payload from one data descriptor (_device.SimpleDevice), the
# Linux >= 6.17 multi-fragment gap that is multi_frag's bug (Cloud Hypervisor #7672).
MULTI_FRAG = "interop.linux-rejected:tx:header + N page fragments (Linux >= 6.17)"
CHECK_CAUSES = {
    "region_end": {"critical": {"safety.slice-in-region:tx:header", "safety.slice-in-region:tx:data",
                                "safety.slice-in-region:rx:data"}, "error": {MULTI_FRAG}},
    "two_desc": {"error": {"interop.linux-rejected:tx:one descriptor (Linux >= 6.2)",
                           "interop.linux-rejected:rx:one rx descriptor (Linux >= 6.2)", MULTI_FRAG}},
    "multi_frag": {"error": {MULTI_FRAG}},
    "loop_hang": {"critical": {"safety.hang:tx", "safety.hang:rx"}, "error": {MULTI_FRAG}},
    "queue_zero": {"critical": {"safety.crash:raised ZeroDivisionError"}, "error": {MULTI_FRAG}},
    "rx_readable": {"critical": {"safety.direction:rx:header", "safety.direction:rx:data"}, "error": {MULTI_FRAG}},
    "tx_writable": {"error": {"safety.read-writable:tx:data", MULTI_FRAG}},
    "max_len": {"error": {"fidelity.max-data-size:tx", MULTI_FRAG}},
    # It truncates the payload to the one descriptor: it misreads the 6.17 layout rather than refusing it.
    "short_data": {"error": {"fidelity.data-len:tx", MULTI_FRAG.replace("linux-rejected", "linux-slices")}},
    "header_swap": {"error": {"fidelity.header-bytes:tx", MULTI_FRAG}},
    "credit_leak": {"error": {"determinism.repeat:rx", MULTI_FRAG}},
    "indirect_unoffered": {"critical": {"safety.slice-in-chain:tx:data"}},
    "limit_mismatch": {"error": {"fidelity.max-data-size:tx"}},
}


@pytest.mark.parametrize("name,module,family", ZOO, ids=[z[0] for z in ZOO])
def test_check_names_each_zoo_bug_once_at_its_severity(name, module, family):
    from vsock_fuzz.engines import check
    from vsock_fuzz.oracles.triage import of_findings
    target = open_target(f"py:{module}:parse")
    causes = of_findings([(f, None, None) for r in check.run(target) for f in r.findings])
    got: dict[str, set] = {}
    for c in causes:
        if c.severity != "warning":
            got.setdefault(c.severity, set()).add(c.key)
    assert got == CHECK_CAUSES[name]
