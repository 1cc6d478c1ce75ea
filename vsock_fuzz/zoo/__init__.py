"""The bug zoo: device parsers with one known bug each, from the classes real VMMs shipped.

Each module has `parse(case) -> Answer` and runs as a protocol v1 program,
so both `py:vsock_fuzz.zoo.NAME:parse` and `cmd:python3 -m vsock_fuzz.zoo.NAME`
work. Most are `_device.SimpleDevice` (a Firecracker / rust-vmm style parser,
written apart from the model) with one rule broken.

`ZOO` lists (name, module, family of the oracle that must catch it);
`ORACLE` names that oracle, `BUG` the real bug each stands for. `CORRECT`
lists devices with no bug that differ from the model in a legal way (fewer
features, fixed limits, other error names), declared in their hello: they
must stay quiet at error and above.
"""

ZOO = [
    ("region_end", "vsock_fuzz.zoo.region_end", "safety"),
    ("two_desc", "vsock_fuzz.zoo.two_desc", "interop"),
    ("multi_frag", "vsock_fuzz.zoo.multi_frag", "interop"),
    ("loop_hang", "vsock_fuzz.zoo.loop_hang", "safety"),
    ("queue_zero", "vsock_fuzz.zoo.queue_zero", "safety"),
    ("rx_readable", "vsock_fuzz.zoo.rx_readable", "safety"),
    ("tx_writable", "vsock_fuzz.zoo.tx_writable", "safety"),
    ("max_len", "vsock_fuzz.zoo.max_len", "fidelity"),
    ("short_data", "vsock_fuzz.zoo.short_data", "fidelity"),
    ("header_swap", "vsock_fuzz.zoo.header_swap", "fidelity"),
    ("credit_leak", "vsock_fuzz.zoo.credit_leak", "determinism"),
    ("indirect_unoffered", "vsock_fuzz.zoo.indirect_unoffered", "safety"),
    ("limit_mismatch", "vsock_fuzz.zoo.limit_mismatch", "fidelity"),
]

CORRECT = [
    ("no_indirect", "vsock_fuzz.zoo.no_indirect"),
    ("fixed_limits", "vsock_fuzz.zoo.fixed_limits"),
    ("firecracker_like", "vsock_fuzz.zoo.firecracker_like"),
]

ORACLE = {
    "region_end": "safety.slice-in-region",
    "two_desc": "interop.linux-rejected",
    "multi_frag": "interop.linux-rejected",
    "loop_hang": "safety.hang",
    "queue_zero": "safety.crash",
    "rx_readable": "safety.direction",
    "tx_writable": "safety.read-writable",
    "max_len": "fidelity.max-data-size",
    "short_data": "fidelity.data-len",
    "header_swap": "fidelity.header-bytes",
    "credit_leak": "determinism.repeat",
    "indirect_unoffered": "safety.slice-in-chain",
    "limit_mismatch": "fidelity.max-data-size",
}

BUG = {
    "region_end": "Firecracker CVE-2019-18960: bounds check of the first byte only",
    "two_desc": "rust-vmm vm-virtio #204 / Cloud Hypervisor #5691: exactly two descriptors assumed",
    "multi_frag": "Cloud Hypervisor #7672 / libkrun #535: tx payload in one data descriptor only",
    "loop_hang": "virtio-queue 0.6.1 class: chain walk without the queue-size bound",
    "queue_zero": "virtio-queue #173: queue size 0 passes the power-of-two test, then divides",
    "rx_readable": "spec 2.7.4.1: rx data written to a device-readable buffer",
    "tx_writable": "spec 2.7.4.1: tx data read from a device-writable buffer",
    "max_len": "hdr.len > max_data_size accepted (Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE)",
    "short_data": "data slices shorter than hdr.len accepted",
    "header_swap": "header decoding slip: type and op read from each other's offset",
    "credit_leak": "state leak: rx data capped by a credit counter kept across packets",
    "indirect_unoffered": "2.7.5.3: an indirect table it never offered followed past its len/16 entries",
    "limit_mismatch": "a fixed payload limit declared in hello but not the one enforced",
}
