"""A device is judged by what it offers (docs/protocol.md, "The device object").

The zoo's correct devices of other legal shapes (no VIRTIO_F_INDIRECT_DESC, a fixed
64 KiB payload limit, a queue maximum of 256) pass `check` and stay quiet at error and
above under the Hypothesis search, declared in hello or given on the command line; the
same device undeclared gets the verdicts a device offering everything gets; an adapter's
`Unsupported` answers are judged by no oracle and counted.
"""

import json
import shlex
import subprocess
import sys

import pytest
from hypothesis import Phase, given, settings

from vsock_fuzz.case.layout import linux_tx
from vsock_fuzz.case.layout import assemble
from vsock_fuzz.case.value import Region
from vsock_fuzz.engines import check
from vsock_fuzz.engines.strategies import cases
from vsock_fuzz.engines.summary import unsupported_note
from vsock_fuzz.engines.worker import count_unsupported
from vsock_fuzz.model.answer import Answer
from vsock_fuzz.model.device import Device
from vsock_fuzz.oracles import SEVERITY_ORDER, evaluate
from vsock_fuzz.targets import TargetError, open_target
from vsock_fuzz.zoo import CORRECT

ZOO_CMD = f"cmd:{shlex.quote(sys.executable)} -m vsock_fuzz.zoo."


def vsock_fuzz(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "vsock_fuzz", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def failing_rows(spec, *extra):
    target = open_target(spec)
    if extra:
        target.give_device(**dict(extra))
    try:
        return [r.row.name for r in check.run(target) if r.verdict == "fail"]
    finally:
        target.close()


@pytest.mark.parametrize("name,module", CORRECT, ids=[c[0] for c in CORRECT])
def test_a_correct_device_of_another_shape_passes_check(name, module):
    assert failing_rows(f"py:{module}:parse") == []


@pytest.mark.parametrize("name,module", CORRECT, ids=[c[0] for c in CORRECT])
def test_a_correct_device_declared_over_the_protocol_passes_check(name, module, tmp_path):
    r = vsock_fuzz("check", "--target", ZOO_CMD + name, "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["target"]["device"]["source"] == "hello device"
    assert "VIRTIO_F_INDIRECT_DESC" not in rep["target"]["device"]["features"] or name == "fixed_limits"


def test_the_same_device_undeclared_gets_todays_verdicts():
    """Without its device object, Firecracker's shape fails the rows a device offering every feature
    must pass: Linux layouts in indirect tables, hdr.len over a max_data_size it never used, a queue of
    32768 its transport refuses."""
    r = vsock_fuzz("check", "--target", ZOO_CMD + "firecracker_like --undeclared")
    assert r.returncode == 1
    failed = [line.split()[0] for line in r.stdout.splitlines() if line.endswith("FAIL") and "/" in line.split()[0]]
    assert "tx/linux-6.2/1KiB/indirect" in failed and "rx/linux-5.x/indirect" in failed
    assert "tx/hdr.len=max_data_size+1(4096)" in failed and "tx/queue-size-32768" in failed
    assert not any(name.startswith("tx/linux-") and "/indirect" not in name for name in failed)


def test_the_command_line_describes_a_device_that_cannot_say_it(tmp_path):
    desc = tmp_path / "fc.json"
    desc.write_text(json.dumps({"features": ["VIRTIO_F_VERSION_1"], "max_data_size": 65536, "max_queue_size": 256}))
    spec = ZOO_CMD + "firecracker_like --undeclared"
    r = vsock_fuzz("check", "--target", spec, "--device", desc, "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stdout[-3000:]
    assert json.loads((tmp_path / "r.json").read_text())["target"]["device"]["source"] == str(desc)
    r = vsock_fuzz("check", "--target", spec, "--device-features", "VIRTIO_F_VERSION_1", "--max-data-size", 65536,
                   "--max-queue-size", 256)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "device (command line)" in r.stdout


def test_the_command_line_wins_over_hello():
    # fixed_limits declares VIRTIO_F_INDIRECT_DESC; said away on the command line, its indirect rows expect nothing.
    target = open_target("py:vsock_fuzz.zoo.fixed_limits:parse")
    target.give_device(features=frozenset())
    assert not target.device.indirect and target.device.max_data_size == 65536
    assert target.device.source == "the callable's device, command line"


@pytest.mark.parametrize("obj,field", [({"max_data_size": -1}, "max_data_size"), ({"featurez": []}, "featurez"),
                                       ({"features": ["indirect"]}, "'indirect' is not a feature name (known: ")])
def test_a_malformed_device_object_in_hello_is_a_startup_error_naming_the_field(tmp_path, obj, field):
    prog = tmp_path / "t.py"
    prog.write_text("import json, sys\n"
                    "for line in sys.stdin:\n"
                    f"    print(json.dumps({{'ok': True, 'protocol': 1, 'name': 'x', 'device': {obj!r}}}), flush=True)\n")
    r = vsock_fuzz("check", "--target", f"cmd:{sys.executable} {prog}")
    assert r.returncode == 2 and field in r.stderr and "device" in r.stderr


def test_a_bad_device_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "d.json"
    bad.write_text('{"max_queue_size": 65536}')
    r = vsock_fuzz("check", "--target", "reference", "--device", bad)
    assert r.returncode == 2 and "max_queue_size" in r.stderr
    r = vsock_fuzz("check", "--target", "reference", "--device", tmp_path / "missing.json")
    assert r.returncode == 2 and "cannot read" in r.stderr


@pytest.mark.parametrize("name,module", CORRECT, ids=[c[0] for c in CORRECT])
def test_a_correct_device_stays_quiet_under_the_search(name, module):
    target = open_target(f"py:{module}:parse")

    @settings(max_examples=1500, database=None, derandomize=True, phases=[Phase.generate], deadline=None)
    @given(cases())
    def probe(case):
        _, findings = evaluate(target, case)
        loud = [f for f in findings if SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER["error"]]
        assert not loud, loud[0].message

    probe()


def unsupported_above_4gib(case):
    """An adapter that cannot map a region of 4 GiB or more; otherwise the zoo's correct device."""
    from vsock_fuzz.zoo.no_indirect import parse
    for r in case.regions:
        if r.size >= 1 << 32:  # the detail names the region, as an adapter's would
            return Answer.reject("Unsupported", "unknown", f"region [{r.gpa:#x}, +{r.size:#x}) cannot be mapped")
    return parse(case)


unsupported_above_4gib.device = {"features": ["VIRTIO_F_VERSION_1", "VIRTIO_F_IN_ORDER"]}  # no_indirect's


def test_unsupported_answers_are_judged_by_no_oracle():
    target = open_target("py:tests.test_device_verdicts:unsupported_above_4gib")
    huge = assemble(linux_tx("6.2", 10))._replace(regions=(Region(0, 1 << 40),))
    answer, findings = evaluate(target, huge)
    assert answer.unsupported and findings == []
    # The same answer from a target whose error table names it otherwise is still the adapter's limit.
    answer = Answer.from_json({"ok": False, "error": "Unsupported"}, {"Unsupported": "memory"})
    assert answer.unsupported and answer.error_class == "unsupported"


def test_a_campaign_counts_unsupported_answers_and_names_the_commonest(tmp_path):
    r = vsock_fuzz("fuzz", "--target", "py:tests.test_device_verdicts:unsupported_above_4gib", "--max-time", 6,
                   "--out", tmp_path / "out", "--json", tmp_path / "r.json", "--minimize-time", 0, timeout=90)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    stats = json.loads((tmp_path / "r.json").read_text())["stats"]
    assert stats["unsupported"] > 0
    if stats["unsupported"] >= 0.02 * stats["cases"]:
        assert "answered Unsupported by the adapter" in r.stdout
        assert "commonest kind" in r.stdout and "region [N, +N) cannot be mapped, e.g. region [0x" in r.stdout


def test_unsupported_answers_are_counted_by_kind_not_by_address():
    counts: dict = {}
    for i in range(30):
        count_unsupported(counts, f"region [{0x1000 * i:#x}, +{(i + 1) << 36:#x}) cannot be mapped")
    assert list(counts) == ["region [N, +N) cannot be mapped"]
    assert counts["region [N, +N) cannot be mapped"] == [30, "region [0x0, +0x1000000000) cannot be mapped"]
    count_unsupported(counts, "region of 2^63 bytes cannot be mapped")
    count_unsupported(counts, "region of 4096 bytes cannot be mapped")
    assert {k: n for k, (n, _) in counts.items()} == {"region [N, +N) cannot be mapped": 30,
                                                      "region of N bytes cannot be mapped": 2}
    note = "".join(unsupported_note({k: n for k, (n, _) in counts.items()}, 100,
                                    {k: example for k, (_, example) in counts.items()}))
    assert "commonest kind (30): region [N, +N) cannot be mapped, e.g. region [0x0, +0x1000000000)" in note


def test_fit_builds_only_memory_the_adapter_maps():
    target = open_target("py:vsock_fuzz.zoo.no_indirect:parse")
    target.give_device(max_region_size=1 << 20, max_regions=1)
    huge = assemble(linux_tx("6.2", 10))._replace(regions=(Region(0, 1 << 40), Region(1 << 41, 4096)))
    seen = []
    target.parse = lambda case: seen.append(case) or Answer(False, error="X", error_class="unknown")
    evaluate(target, huge)
    assert seen and seen[0].regions == (Region(0, 1 << 20),)
    # A Linux layout refused is asked again in another (interop.content_probe): in as little memory.
    assert all(len(c.regions) == 1 and c.regions[0].size <= 1 << 20 for c in seen)
    assert Device(max_regions=1).fit(huge).regions == (Region(0, 1 << 40),)


def test_a_py_target_with_a_malformed_device_attribute_cannot_be_opened():
    with pytest.raises(TargetError, match="max_queue_size"):
        open_target("py:tests.test_device_verdicts:bad_device")


def bad_device(case):
    return Answer(False, error="X", error_class="unknown")


bad_device.device = {"max_queue_size": 0}
