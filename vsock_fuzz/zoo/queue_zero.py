"""rust-vmm virtio-queue #173: queue size 0 passes a power-of-two test written as
`size & (size - 1) == 0`, then the available-ring index is reduced modulo the
size: a division by zero (a panic in Rust, an exception here: a crash)."""

from ._device import Reject, SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo queue_zero (virtio-queue #173)"

    def check_queue(self, host, ring):
        size = ring.size
        # BUG: 0 & (0 - 1) == 0, so 0 counts as a power of two.
        if size > 32768 or size & (size - 1):
            raise Reject("InvalidQueueSize", f"queue size {size}")
        if not host.covered(ring.desc_table, 16 * size) or not host.covered(ring.avail, 6 + 2 * size):
            raise Reject("GuestMemory", "rings are not mapped")


parse = Device().parse

if __name__ == "__main__":
    run(Device())
