"""State leak between packets: the rx path caps the data it writes by a credit counter the
device keeps across packets (refilled only when it runs dry), so the same
rx chain gets a different answer depending on what came before."""

from ._device import SimpleDevice, run
from ..model.answer import Answer

REFILL = 4096  # a small peer buffer (buf_alloc)


class Device(SimpleDevice):
    name = "zoo credit_leak (state across packets)"

    def __init__(self):
        self.credit = REFILL

    def _parse(self, case):
        answer = super()._parse(case)
        if case.queue != "rx" or not answer.ok or not answer.data_slices:
            return answer
        (addr, n), = answer.data_slices
        n = min(n, self.credit)  # BUG: a per-connection credit applied to every packet, and kept
        self.credit -= n
        if self.credit == 0:
            self.credit = REFILL
        return Answer(True, None, answer.header_slices, ((addr, n),) if n else ())


parse = Device().parse

if __name__ == "__main__":
    run(Device())
