"""A correct device shaped as Firecracker's vsock (facts file, "What real devices offer a
guest"): no VIRTIO_F_INDIRECT_DESC (the flag is read as a plain buffer), a fixed 64 KiB
payload limit and a queue maximum of 256, all declared in hello. No finding at error or
above is expected; without its hello `device` object it gets the verdicts a device that
offers everything would."""

from . import fixed_limits
from ._device import run


class Device(fixed_limits.Device):
    """fixed_limits' device without the indirect tables it offered."""
    name = "zoo firecracker_like (correct: no indirect, 64 KiB, queue max 256)"
    device = {**fixed_limits.Device.device, "features": ["VIRTIO_F_VERSION_1", "VIRTIO_F_IN_ORDER"]}
    tables = False


parse = Device().parse

if __name__ == "__main__":
    run(Device())
