"""The compiled core (core/, vsock_fuzz/model/compiled.py) against the Python reference it stands in for.

The core decodes, fits and encodes cases and compares answers with the spec model's
readings on the per-case path; the Python modules stay the reference. These tests hold
the two to the same results on the whole corpus, the check matrix, Hypothesis's cases and
mutated inputs, for every device shape the readings depend on; and the per-case path
through the core to the same findings as the Python path on the zoo's devices.

`make test` builds the core first (make core): a missing core fails here, it does not skip.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsock_fuzz.model import compiled as core_module
from vsock_fuzz.case.binary import decode, encode
from vsock_fuzz.case.layout import assemble
from vsock_fuzz.engines import percase
from vsock_fuzz.engines.check_rows import SPECS
from vsock_fuzz.engines.strategies import cases
from vsock_fuzz.model.answer import Answer
from vsock_fuzz.model.device import INDIRECT_DESC, SEQPACKET, Device
from vsock_fuzz.model.packet import parse, readings
from vsock_fuzz.oracles import linux_layout
from vsock_fuzz.oracles import run as oracle_run
from vsock_fuzz.oracles.run import agrees
from vsock_fuzz.targets import PythonTarget
from vsock_fuzz.zoo import CORRECT, ZOO

ROOT = Path(__file__).resolve().parent.parent
core = core_module.load()
if core is None and os.environ.get("VSOCK_FUZZ_CORE") != "0":
    pytest.fail("the compiled core (vsock_fuzz_core) is not installed: `make core` builds it", pytrace=False)
pytestmark = pytest.mark.skipif(core is None, reason="VSOCK_FUZZ_CORE=0: the core is turned off")

# Every shape the readings depend on: no description, no features, each feature alone, a small queue.
DEVICES = (Device(), Device(features=frozenset(), source="test"),
           Device(features=frozenset({INDIRECT_DESC}), source="test"),
           Device(features=frozenset({SEQPACKET}), max_queue_size=256, source="test"),
           Device(features=frozenset({INDIRECT_DESC, SEQPACKET}), max_queue_size=8, source="test"))


def corpus_inputs() -> list[bytes]:
    return [p.read_bytes() for p in sorted((ROOT / "corpus").rglob("*"))
            if p.is_file() and p.suffix not in (".json", ".dict", ".md")]


def mutated(inputs: list[bytes], n: int, seed: int = 1) -> list[bytes]:
    """Inputs a fuzzer would try: corpus entries with a few bytes changed, cut or grown."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        data = bytearray(rnd.choice(inputs))
        for _ in range(rnd.randrange(1, 5)):
            if data:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        if rnd.random() < 0.3:
            data = data[:rnd.randrange(len(data) + 1)] + rnd.randbytes(rnd.randrange(8))
        out.append(bytes(data))
    return out


def offer(device: Device) -> tuple:
    return device.features is not None, device.indirect, device.seqpacket, device.max_queue_size


def python_readings(case, device) -> list[tuple]:
    return [(r.answer.ok, r.answer.error, r.answer.error_class, r.answer.header and tuple(r.answer.header),
             r.answer.header_slices, r.answer.data_slices) for r in readings(case, "spec", device)]


def core_readings(cc, device) -> list[tuple]:
    return [(ok, error, kind, header and tuple(header), tuple(map(tuple, hs)), tuple(map(tuple, ds)))
            for ok, error, kind, header, hs, ds in cc.readings(*offer(device))]


def assert_same(data: bytes) -> None:
    """The core and the Python reference agree on everything the per-case path asks of `data`."""
    case, cc = decode(data), core.decode(data)
    assert cc.case() == case, data.hex()
    assert cc.raw() == encode(case)
    assert json.loads(cc.line(7)) == case.to_request(7)
    for device in DEVICES:
        assert core_readings(cc, device) == python_readings(case, device), (data.hex(), device)
    fitted = Device(max_data_size=4096, max_region_size=1 << 16, max_regions=1, source="test")
    assert cc.fit(fitted.max_data_size, fitted.max_region_size, fitted.max_regions).case() == fitted.fit(case)


def test_corpus_and_mutations():
    inputs = corpus_inputs()
    assert len(inputs) > 50
    for data in inputs + mutated(inputs, 3000):
        assert_same(data)


def test_check_matrix():
    for spec in SPECS:
        assert_same(encode(assemble(spec.layout)))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(cases())
def test_strategy_cases(case):
    raw = encode(case)
    assert core.decode(raw).case() == case
    assert_same(raw)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.binary(max_size=160))
def test_any_bytes(data):
    assert_same(data)


def test_agrees_as_python():
    """cc.agrees over the readings is oracles.run.agrees over packet.readings, for the answers
    the zoo's buggy devices give (accepted with other slices or headers, refused, crashed)."""
    inputs = corpus_inputs()
    inputs += mutated(inputs, 600, seed=2)
    checked = differ = 0
    for _, module, _ in ZOO:
        parse = __import__(module, fromlist=["parse"]).parse
        for data in inputs:
            case, cc = decode(data), core.decode(data)
            try:
                answer = parse(case)
            except Exception as e:  # a crash is an answer that agrees with nothing
                answer = Answer.fault("crash", str(e))
            answer = answer if isinstance(answer, Answer) else Answer.from_json(answer)
            for device in DEVICES:
                rs = readings(case, "spec", device)
                want = any(agrees(answer, r.answer) for r in rs)
                assert cc.agrees(answer, *offer(device)) == want, (module, data.hex(), device, answer)
                checked += 1
                differ += not want
    assert differ > 100 and checked - differ > 100  # both outcomes were exercised


def test_agrees_refuses_what_no_model_answer_holds():
    cc = core.decode(encode(assemble(SPECS[0].layout)))
    assert not cc.agrees(Answer.fault("crash", "boom"), *offer(Device()))
    assert not cc.agrees(Answer.reject("Unsupported", "unsupported"), *offer(Device()))
    ok, _, _, header, hs, ds = cc.readings(*offer(Device()))[0]
    assert ok
    right = Answer(True, None if header is None else tuple(header), tuple(map(tuple, hs)), tuple(map(tuple, ds)))
    assert cc.agrees(right, *offer(Device()))
    assert not cc.agrees(Answer(True, right.header, right.header_slices, ((1 << 70, 1),)), *offer(Device()))
    assert not cc.agrees(Answer(True, right.header, right.header_slices[:-1], right.data_slices), *offer(Device()))


REFUSALS = (Answer.reject("DescriptorLengthTooSmall", "length", "the header descriptor is short"),
            Answer.reject("Nope", "unknown"))


def refusals_judged(data: bytes, device: Device) -> int:
    """What the oracles say of each refusal of `data`'s case judged from the core's facts
    (cc.refusal, core/src/refusal.rs) is what they say on the Python path, strict or not:
    1 if the core judged it, 0 if it left it to Python."""
    case, cc = decode(data), core.decode(data)
    facts = cc.refusal(*offer(device))
    if facts is None:
        return 0
    (ok, error, kind, header, hs, ds), traits, indirect = facts
    model = parse(case, "spec", device)
    assert (ok, header and tuple(header), tuple(map(tuple, hs)), tuple(map(tuple, ds))) == \
        (model.ok, model.header and tuple(model.header), model.header_slices, model.data_slices), data.hex()
    target = PythonTarget(lambda c: REFUSALS[0], "refuses")
    target.device = device
    for answer in REFUSALS:
        for strict in (False, True):
            oracle_run.forget()
            mine = oracle_run.judge(target, case, answer, strict=strict, determinism=0, refusal=(model, traits, indirect))
            oracle_run.forget()
            assert mine == oracle_run.judge(target, case, answer, strict=strict, determinism=0), (data.hex(), device)
    return 1


def test_refusals_judged_from_the_core_as_in_python():
    inputs = corpus_inputs()
    inputs += mutated(inputs, 3000, seed=5) + [encode(assemble(spec.layout)) for spec in SPECS]
    judged = sum(refusals_judged(data, device) for data in inputs for device in DEVICES)
    # Most refusals the model accepts are judged in the core; Linux layouts are left to Python (content probes).
    linux = [data for data in inputs if linux_layout(decode(data))]
    assert judged > len(inputs) // 2 and linux
    assert all(core.decode(data).refusal(*offer(Device())) is None for data in linux)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(cases())
def test_refusals_of_strategy_cases(case):
    for device in DEVICES:
        refusals_judged(encode(case), device)


def findings_of(checker, inputs) -> list[list[tuple]]:
    out = []
    for data in inputs:
        _, findings, answer = checker(data)
        out.append(sorted((f.oracle, f.key(), f.severity) for f in findings))
    return out


@pytest.mark.parametrize("name,module", [(n, m) for n, m, _ in ZOO if n != "credit_leak"] + CORRECT)
def test_same_findings_as_the_python_path(name, module, monkeypatch):
    """The per-case path through the core finds what the Python path finds, case by case, on
    every zoo device (credit_leak's findings depend on its state across cases: test_oracles)."""
    monkeypatch.setattr(percase, "DETERMINISM_EVERY", 0)  # no sampled second asks: the two runs align
    inputs = corpus_inputs()
    inputs += mutated(inputs, 300, seed=3)
    target = PythonTarget(__import__(module, fromlist=["parse"]).parse, name)
    fast = findings_of(percase.case_checker(target), inputs)
    monkeypatch.setattr(core_module, "_loaded", False)
    slow = findings_of(percase.case_checker(target), inputs)
    assert fast == slow
    if (name, module) not in CORRECT:
        assert any(fast), f"{name}: no finding on {len(inputs)} inputs"


def test_counters_for_libfuzzer():
    """The core is built with its coverage counters (core/pyproject.toml): without them a
    campaign against a device with no coverage of its own would run blind."""
    where = core.counters()
    assert where is not None and where[1] > 100


@pytest.mark.parametrize("target", ["cmd:./device", "py:vsock_fuzz.zoo.indirect_unoffered:parse", "py:mydevice:parse"])
def test_coverage_through_the_core(target):
    """Through the core, a campaign instruments the oracles (they tell one disagreement from
    another, on the answers that differ) and a py: target's own code, not the Python model
    (the core's counters stand for it) nor the plumbing, the oracles' own included."""
    include, exclude, compiled = percase.coverage_plan(target)
    assert compiled and "vsock_fuzz" in include
    assert ("mydevice" in include) == (target == "py:mydevice:parse")
    kept = {m for m in percase._our_modules() if m not in exclude}
    oracles = {m for m in percase._our_modules() if m.startswith("vsock_fuzz.oracles")}
    assert oracles & kept == oracles - percase.ORACLE_PLUMBING
    assert {"vsock_fuzz.oracles.safety", "vsock_fuzz.oracles.conformance", "vsock_fuzz.oracles.interop"} <= kept
    assert not kept & {"vsock_fuzz.model.packet", "vsock_fuzz.model.chain", "vsock_fuzz.engines.percase",
                       "vsock_fuzz.targets.command", "vsock_fuzz.oracles.context", "vsock_fuzz.oracles.run"}
    assert ("vsock_fuzz.zoo.indirect_unoffered" in kept) == ("zoo" in target)


def test_without_the_core_says_so_once(tmp_path):
    """A vsock-fuzz installed without the core runs the Python path and says so once."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['vsock_fuzz_core'] = None  # import fails: not installed\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    env.pop("VSOCK_FUZZ_CORE", None)
    out = subprocess.run([sys.executable, "-m", "vsock_fuzz", "fuzz", "--target", "py:vsock_fuzz.zoo.max_len:parse",
                          "--max-time", "3", "--out", str(tmp_path / "out"), "--stop-on", "fidelity.max-data-size"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.stderr.count("the compiled core (vsock-fuzz-core) is not installed") == 1, out.stderr
    assert "fidelity.max-data-size" in out.stdout, out.stdout[-2000:]


def test_answer_frames_as_python(monkeypatch):
    """The core decodes an accepting frames-v1 answer as targets.frames does, and leaves every
    other frame (a rejection, a malformed one) to it, which names what is wrong."""
    from vsock_fuzz.targets import frames
    answers = [Answer.reject("ChainTooLong", "chain", "a loop"), Answer(True, None, (), ())]
    for data in corpus_inputs()[:200]:
        answers += [r.answer for r in readings(decode(data), "spec", DEVICES[1])]
    encoded = [frames.encode_answer(i, a)[4:] for i, a in enumerate(answers)]
    rnd = random.Random(4)
    garbled = [f[:rnd.randrange(len(f))] for f in encoded] + [f + b"\0" for f in encoded]

    def decode_all(frames_):
        out = []
        for f in frames_:
            try:
                out.append(frames.decode_answer(f))
            except frames.FrameError as e:
                out.append(str(e))
        return out
    assert frames._compiled is core
    fast = decode_all(encoded + garbled)
    assert sum(core.answer_frame(f) is not None for f in encoded) > 50  # the core decoded the accepting ones
    monkeypatch.setattr(frames, "_compiled", None)
    assert fast == decode_all(encoded + garbled)
    assert [a for _, a in fast[:len(answers)] if a.ok] == [a for a in answers if a.ok]
