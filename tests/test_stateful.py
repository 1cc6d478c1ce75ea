"""The queue state machine: the model stays correct over many chains on a real ring, and a
device that leaks state between packets is caught."""

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from vsock_fuzz.engines.stateful import Device, QueueMachine, SplitQueue
from vsock_fuzz.targets import ModelTarget, PythonTarget, open_target
from vsock_fuzz.zoo import credit_leak

STEPS = settings(stateful_step_count=40)


class ModelTx(QueueMachine):
    target = ModelTarget("spec")
    queue = "tx"


class ModelRx(QueueMachine):
    target = ModelTarget("spec")
    queue = "rx"


class RustVmmTx(QueueMachine):
    target = ModelTarget("rust-vmm")
    profile = "rust-vmm"


TestModelTx = ModelTx.TestCase
TestModelTx.settings = STEPS
TestModelRx = ModelRx.TestCase
TestModelRx.settings = STEPS
TestRustVmmTx = RustVmmTx.TestCase
TestRustVmmTx.settings = STEPS


def test_state_leak_is_caught():
    """zoo credit_leak caps rx data by a credit kept across packets: replaying an earlier
    chain gives another answer."""
    class Leaky(QueueMachine):
        queue = "rx"

        def make_target(self):  # a fresh device per run: the leak shows within one run
            return PythonTarget(credit_leak.Device().parse, "zoo credit_leak")

    with pytest.raises(AssertionError, match="state leak"):
        run_state_machine_as_test(Leaky, settings=settings(max_examples=300, stateful_step_count=40, database=None,
                                                           derandomize=True, phases=[Phase.generate]))


def test_indexes_wrap_past_65535():
    q = SplitQueue(4, start=65534)
    dev = Device(q, 65534)
    for head in (0, 1, 2):
        q.write_desc(head, q.data, 64, 0, 0)
        q.publish(head)
    assert q.avail_idx == 1 and dev.pending() == 3
    assert [dev.pop() for _ in range(3)] == [0, 1, 2] and dev.last_avail == 1


def test_device_refuses_more_pending_than_the_queue_holds():
    """virtio-queue 0.6.1: an available index run past the queue size must not make the
    device pop the same chains again."""
    q = SplitQueue(2)
    for _ in range(3):
        q.publish(0)
    with pytest.raises(AssertionError, match="pending on a queue of 2"):
        Device(q, 0).pop()


def test_unbounded_work_per_pop_is_caught():
    """zoo loop_hang walks a looping chain without the queue-size bound: the pop that meets
    the driver's first looping chain reports a hang."""
    class Unbounded(QueueMachine):
        target = open_target("py:vsock_fuzz.zoo.loop_hang:parse")

    with pytest.raises(AssertionError, match="safety.hang"):
        run_state_machine_as_test(Unbounded, settings=settings(max_examples=200, stateful_step_count=40, database=None,
                                                               derandomize=True, phases=[Phase.generate]))
