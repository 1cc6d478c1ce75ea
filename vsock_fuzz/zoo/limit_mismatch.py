"""A device that declares a fixed 64 KiB payload limit in hello but enforces 128 KiB: it
accepts a tx packet whose hdr.len the limit it announced forbids (fidelity.max-data-size;
the Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE rule every VMM also applies)."""

from ._device import SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo limit_mismatch (declares 64 KiB, enforces 128 KiB)"
    device = {"features": ["VIRTIO_F_VERSION_1", "VIRTIO_F_INDIRECT_DESC"],
              "max_data_size": 65536, "max_queue_size": 256}
    max_data_size = 128 * 1024  # BUG: not the 65536 it declared
    max_queue_size = 256
    fragments = True


parse = Device().parse

if __name__ == "__main__":
    run(Device())
