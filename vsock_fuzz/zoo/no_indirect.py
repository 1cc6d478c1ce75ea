"""A correct device that never offered VIRTIO_F_INDIRECT_DESC and says so in hello: it reads
a descriptor with the INDIRECT flag as a plain buffer, as Firecracker's queue code does.
The driver broke 2.7.5.3's precondition; the device used only memory the driver gave it.
No finding at error or above is expected."""

from ._device import SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo no_indirect (correct, no VIRTIO_F_INDIRECT_DESC)"
    device = {"features": ["VIRTIO_F_VERSION_1", "VIRTIO_F_IN_ORDER"]}
    tables = False
    fragments = True


parse = Device().parse

if __name__ == "__main__":
    run(Device())
