"""Length slip: a data descriptor shorter than hdr.len is accepted and the packet is
truncated to it, so the data slices do not total hdr.len."""

from ._device import SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo short_data (truncated payload)"

    def payload(self, want, room):
        return min(want, room)  # BUG: should reject room < want


parse = Device().parse

if __name__ == "__main__":
    run(Device())
