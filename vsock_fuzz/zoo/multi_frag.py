"""Cloud Hypervisor #7672 / libkrun #535: the tx payload must fit the one descriptor after
the header, so Linux >= 6.17 packets over 32 KiB, whose payload comes in page
fragments, are rejected (BufDescTooSmall). This is `SimpleDevice` as it is:
Firecracker's and rust-vmm's own layout limit."""

from ._device import SimpleDevice, run


class Device(SimpleDevice):
    name = "zoo multi_frag (Cloud Hypervisor #7672)"


parse = Device().parse

if __name__ == "__main__":
    run(Device())
