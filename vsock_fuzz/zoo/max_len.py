"""Length slip: hdr.len is never compared with max_data_size, so a guest makes the device
take (and buffer) a payload larger than VIRTIO_VSOCK_MAX_PKT_BUF_SIZE."""

from ._device import SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo max_len (hdr.len unchecked)"

    def check_len(self, hdr, mds):
        pass  # BUG: no hdr.len <= max_data_size


parse = Device().parse

if __name__ == "__main__":
    run(Device())
