"""rust-vmm vm-virtio #204 / Cloud Hypervisor #5691: the device assumes a packet is a
header descriptor plus a data descriptor, so Linux >= 6.2 single-descriptor
packets (header and data together) are rejected."""

from ._device import SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo two_desc (vm-virtio #204)"
    lone_head = False  # BUG: a lone head never carries the payload


parse = Device().parse

if __name__ == "__main__":
    run(Device())
