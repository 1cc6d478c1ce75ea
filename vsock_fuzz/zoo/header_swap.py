"""Header decoding slip: `type` and `op` (le16 at offsets 28 and 30) are read from each
other's offset, so every packet's type and operation are misread."""

from ._device import HDR, SimpleDevice, run
from ..case.wire import Header


class Device(SimpleDevice):
    name = "zoo header_swap (type/op offsets)"

    def decode_header(self, raw):
        f = HDR.unpack(raw)
        return Header(*f[:5], f[6], f[5], *f[7:])  # BUG: op read as type and type as op


parse = Device().parse

if __name__ == "__main__":
    run(Device())
