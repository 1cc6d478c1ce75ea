"""Spec 2.7.4.1 slip: the tx path never checks WRITE, so device-writable buffers (which the
driver offered for the device to fill) are read as the packet."""

from ._device import SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo tx_writable (2.7.4.1)"

    def check_direction(self, flags, rx):
        if rx:
            super().check_direction(flags, rx)
        # BUG: tx buffers are read whatever their WRITE flag says.


parse = Device().parse

if __name__ == "__main__":
    run(Device())
