"""Firecracker CVE-2019-18960 class: the bounds check looks at a buffer's first byte only,
so a buffer running past the end of its memory region is accepted and the host
reads or writes the memory that follows the region's mapping."""

from ._device import Reject, SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo region_end (CVE-2019-18960)"

    def check_span(self, host, addr, n):
        # BUG: addr + n is never compared with the region's end.
        if host.region(addr) is None:
            raise Reject("GuestMemory", f"{addr:#x} is not mapped")


parse = Device().parse

if __name__ == "__main__":
    run(Device())
