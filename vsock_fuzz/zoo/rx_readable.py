"""Spec 2.7.4.1 slip: the rx path never checks WRITE, so the device writes the packet into
device-readable buffers the driver may still be reading from."""

from ._device import SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo rx_readable (2.7.4.1)"

    def check_direction(self, flags, rx):
        if not rx:
            super().check_direction(flags, rx)
        # BUG: rx buffers are taken whatever their WRITE flag says.


parse = Device().parse

if __name__ == "__main__":
    run(Device())
