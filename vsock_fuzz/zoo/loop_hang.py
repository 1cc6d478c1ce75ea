"""Missing loop bound (virtio-queue 0.6.1 class): the chain walk follows NEXT with no ttl,
so a chain whose `next` points back loops forever.

As a program (`python -m vsock_fuzz.zoo.loop_hang`) it truly hangs and the
harness's timeout reports it. In-process a hang would stop the test run, so
`parse` stops after STEP_LIMIT steps and answers as a watchdog would: a hang."""

from ._device import SimpleDevice, run

STEP_LIMIT = 20_000


class Device(SimpleDevice):
    name = "zoo loop_hang (no chain ttl)"

    def step(self, steps, ttl):
        pass  # BUG: no bound on the chain's length


_watched = Device()
_watched.step_limit = STEP_LIMIT  # in-process only: a hang must not stop the test run
parse = _watched.parse

if __name__ == "__main__":
    run(Device())
