"""A correct device with fixed limits, declared in hello: a 64 KiB payload limit of its own
(it ignores the request's max_data_size) and queues of at most 256 entries, as Firecracker,
Cloud Hypervisor and libkrun have. No finding at error or above is expected."""

from ._device import SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo fixed_limits (correct, 64 KiB payload, queue max 256)"
    device = {"features": ["VIRTIO_F_VERSION_1", "VIRTIO_F_INDIRECT_DESC"],
              "max_data_size": 65536, "max_queue_size": 256}
    max_data_size = 65536
    max_queue_size = 256
    fragments = True


parse = Device().parse

if __name__ == "__main__":
    run(Device())
