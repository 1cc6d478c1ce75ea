"""The device a target wraps: the virtio features it offers and its fixed limits
(docs/protocol.md, "The device object").

A conforming driver uses only what the device offered, so the harness judges
a device by its own offer: a layout that needs a feature the device did not
offer is not expected to be accepted, a fixed `max_data_size` is the one sent
and the one `hdr.len` is judged against, a queue larger than the device's
maximum is an expected refusal, and memory the adapter cannot map is never
built. Without a description the harness assumes what it always did
(`ASSUMED`): every feature offered, `max_data_size` from each case, queues up
to 32768, memory of any shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..case.value import U64, Case, Region, clip_each
from .chain import MAX_QUEUE_SIZE

INDIRECT_DESC = "VIRTIO_F_INDIRECT_DESC"
SEQPACKET = "VIRTIO_VSOCK_F_SEQPACKET"
# The features that change what a guest may put on the queues and that the model reads.
MODELLED = (INDIRECT_DESC, SEQPACKET)
# Linux's names for the same bits.
ALIASES = {"VIRTIO_RING_F_INDIRECT_DESC": INDIRECT_DESC, "VIRTIO_RING_F_EVENT_IDX": "VIRTIO_F_EVENT_IDX",
           "VIRTIO_F_IOMMU_PLATFORM": "VIRTIO_F_ACCESS_PLATFORM"}
# Every feature bit a virtio-vsock device can offer (virtio 1.3: the reserved bits of 6, legacy
# ones included, and the vsock device's of 5.10.3). A name outside them is a typo, not a bit the
# harness may ignore: `indirect` silently read as "no VIRTIO_F_INDIRECT_DESC" would change verdicts.
KNOWN = (INDIRECT_DESC, "VIRTIO_F_EVENT_IDX", "VIRTIO_F_VERSION_1", "VIRTIO_F_ACCESS_PLATFORM",
         "VIRTIO_F_RING_PACKED", "VIRTIO_F_IN_ORDER", "VIRTIO_F_ORDER_PLATFORM", "VIRTIO_F_SR_IOV",
         "VIRTIO_F_NOTIFICATION_DATA", "VIRTIO_F_NOTIF_CONFIG_DATA", "VIRTIO_F_RING_RESET", "VIRTIO_F_ADMIN_VQ",
         "VIRTIO_F_NOTIFY_ON_EMPTY", "VIRTIO_F_ANY_LAYOUT",
         "VIRTIO_VSOCK_F_STREAM", SEQPACKET, "VIRTIO_VSOCK_F_NO_IMPLIED_STREAM",
         "VIRTIO_VSOCK_F_DGRAM")  # the datagram bit of the virtio draft, which libkrun offers
LIMITS = ("max_data_size", "max_queue_size", "max_region_size", "max_regions")


class DeviceError(ValueError):
    """A device description that cannot be read; the message names the field."""


@dataclass(frozen=True)
class Device:
    features: frozenset | None = None     # None: no description, every feature offered
    max_data_size: int | None = None      # the device's own fixed payload limit; None: each case's
    max_queue_size: int = MAX_QUEUE_SIZE
    max_region_size: int | None = None    # what the adapter can map; None: any
    max_regions: int | None = None
    source: str = "assumed"               # hello | command line | FILE | assumed

    def offers(self, feature: str) -> bool:
        return self.features is None or feature in self.features

    @property
    def indirect(self) -> bool:
        return self.features is None or INDIRECT_DESC in self.features

    @property
    def seqpacket(self) -> bool:
        return self.features is None or SEQPACKET in self.features

    @property
    def described(self) -> bool:
        return self.source != "assumed"

    @property
    def fits_any_case(self) -> bool:
        """Whether fit() leaves every case as it is (the per-case path skips it)."""
        return self.max_data_size is None and self.max_region_size is None and self.max_regions is None

    def fit(self, case: Case) -> Case:
        """The case as the harness sends it to this device: its fixed max_data_size, and only
        the memory the adapter can map (regions cut to max_region_size, at most max_regions of
        them, writes clipped to what is left). The same case in, the same case out."""
        if self.fits_any_case:
            return case
        changes = {}
        if self.max_data_size is not None and case.max_data_size != self.max_data_size:
            changes["max_data_size"] = self.max_data_size
        regions = case.regions
        if self.max_regions is not None and len(regions) > self.max_regions:
            regions = regions[:self.max_regions]
        if self.max_region_size is not None and any(r.size > self.max_region_size for r in regions):
            regions = tuple(Region(r.gpa, min(r.size, self.max_region_size)) for r in regions)
        if regions is not case.regions:
            changes["regions"] = regions
            changes["writes"] = tuple(clip_each(regions, case.writes))
        return case._replace(**changes) if changes else case

    def to_json(self) -> dict:
        out = {"source": self.source}
        if self.features is not None:
            out["features"] = sorted(self.features)
            unknown = sorted(f for f in self.features if f not in MODELLED)
            if unknown:
                out["not_modelled"] = unknown  # kept for the report, otherwise ignored
        for name in LIMITS:
            value = getattr(self, name)
            if value is not None and (name != "max_queue_size" or value != MAX_QUEUE_SIZE):
                out[name] = value
        return out

    @classmethod
    def from_json(cls, obj, source: str) -> "Device":
        """A device from the hello answer's `device` object (or a --device file)."""
        if not isinstance(obj, dict):
            raise DeviceError(f"device: expected an object, got {type(obj).__name__}")
        unknown = sorted(set(obj) - {"features", *LIMITS, "source"})
        if unknown:
            raise DeviceError(f"device: unknown field {unknown[0]!r} (known: features, {', '.join(LIMITS)})")
        features = None
        if "features" in obj:
            features = parse_features(obj["features"], "device.features", text=False)
        limits = {name: _limit(obj[name], f"device.{name}", name) for name in LIMITS if obj.get(name) is not None}
        return cls(features=features, source=source, **limits)

    def override(self, source: str, *, features=None, **limits) -> "Device":
        """This description with the given fields replaced (the command line wins)."""
        changes = {k: v for k, v in limits.items() if v is not None}
        if features is not None:
            changes["features"] = features
        if not changes:
            return self
        return replace(self, source=source if self.source == "assumed" else f"{self.source}, {source}", **changes)


ASSUMED = Device()


def parse_features(raw, where: str, text: bool = True) -> frozenset:
    """Feature names from a list (JSON) or, with `text`, a comma-separated string (command line)."""
    if text and isinstance(raw, str):
        raw = [f.strip() for f in raw.split(",") if f.strip()]
    if not isinstance(raw, list):
        raise DeviceError(f"{where}: expected a list of feature names, got {type(raw).__name__}")
    out = set()
    for f in raw:
        if not isinstance(f, str) or ALIASES.get(f, f) not in KNOWN:
            raise DeviceError(f"{where}: {f!r} is not a feature name (known: {', '.join(KNOWN + tuple(ALIASES))})")
        out.add(ALIASES.get(f, f))
    return frozenset(out)


def _limit(value, where: str, name: str) -> int:
    if type(value) is not int or value <= 0 or value >= U64:
        raise DeviceError(f"{where}: expected a positive integer below 2^64, got {value!r}")
    if name == "max_queue_size" and value > MAX_QUEUE_SIZE:
        raise DeviceError(f"{where}: {value} is above the spec's largest queue, {MAX_QUEUE_SIZE}")
    if name == "max_data_size" and value > 0xFFFFFFFF:
        raise DeviceError(f"{where}: {value} does not fit hdr.len, a le32")
    return value
