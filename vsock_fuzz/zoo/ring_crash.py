"""A crash-prone device with two bugs of two classes, for benchmarks/bench_gap.py and the
crash-path tests: it panics on every case whose available ring is not mapped (the ring's
index is read before its mapping is checked: an unchecked slice index in Rust, a panic),
and its rx path never checks WRITE on the data buffer (the 2.7.4.1 slip of rx_readable).

The panic fires on a common class of input (a mutated ring address), the rx bug only on
a mapped ring: a campaign that spends its time restarting the device after the first
reaches the second late or never.

Not in ZOO (one planted bug per device there): `--no-crash` serves the same device with
the avail ring checked, the crash-free baseline its campaign rate is compared against.
"""

import sys

from ._device import Reject, SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo ring_crash (unmapped avail ring panics; rx ignores WRITE)"
    crashes = True
    fragments = True  # tx payload over the descriptors after the head, as Linux >= 6.17 sends it

    def check_queue(self, host, ring):
        size = ring.size
        if self.crashes and not host.covered(ring.avail, 6 + 2 * size):
            # BUG 1: the avail ring is indexed before its mapping is checked.
            raise IndexError(f"avail ring at {ring.avail:#x} is not mapped: index out of bounds")
        super().check_queue(host, ring)

    def check_direction(self, flags, rx):
        if not rx:
            super().check_direction(flags, rx)
        # BUG 2: rx buffers are taken whatever their WRITE flag says.


parse = Device().parse


class NoCrash(Device):
    name = "zoo ring_crash --no-crash (rx ignores WRITE)"
    crashes = False


parse_no_crash = NoCrash().parse

if __name__ == "__main__":
    run(NoCrash() if "--no-crash" in sys.argv[1:] else Device())
