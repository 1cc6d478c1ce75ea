"""A device that never offered VIRTIO_F_INDIRECT_DESC, and says so, yet follows indirect
tables, bounding their walk by the queue size instead of the table's own length (2.7.5.3:
len/16 entries): a `next` past the table's end reads a descriptor from the memory after
it, a buffer no descriptor of the chain gave. Following the table is allowed; reading
past it is not (safety.slice-in-chain)."""

from ._device import SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo indirect_unoffered (follows tables it never offered, past their end)"
    device = {"features": ["VIRTIO_F_VERSION_1"]}
    fragments = True

    def table_size(self, n, ring):
        # BUG: the table is taken to be as long as the queue, not len/16 entries.
        return ring.size


parse = Device().parse

if __name__ == "__main__":
    run(Device())
