"""A correct device shaped as Firecracker's vsock (facts file, "What real devices offer a
guest"): no VIRTIO_F_INDIRECT_DESC (the flag is read as a plain buffer), a fixed 64 KiB
payload limit and a queue maximum of 256, all declared in hello. No finding at error or
above is expected; without its hello `device` object it gets the verdicts a device that
offers everything would."""

from ._device import SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo firecracker_like (correct: no indirect, 64 KiB, queue max 256)"
    device = {"features": ["VIRTIO_F_VERSION_1", "VIRTIO_F_IN_ORDER"],
              "max_data_size": 65536, "max_queue_size": 256}
    tables = False
    max_data_size = 65536
    max_queue_size = 256
    fragments = True


parse = Device().parse

if __name__ == "__main__":
    run(Device())
