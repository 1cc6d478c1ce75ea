"""A target's answer to one case, in the protocol's answer shape.

A target that crashed or hung on the case answers too, with error class
"crash" or "hang", so every oracle sees one kind of value. The error name
`Unsupported` is the adapter's own limit, not the device's verdict
(docs/protocol.md: a region it cannot map, a queue it cannot represent):
its class is "unsupported", whatever a target's error table says, and no
oracle judges it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..case.wire import Header

ERROR_CLASSES = ("chain", "permission", "length", "memory", "queue")
FAULT_CLASSES = ("crash", "hang")
UNSUPPORTED = "Unsupported"

# Error names of known implementations -> class. A target's own names not here
# are classed "unknown"; the raw name is always kept.
ERROR_CLASS = {
    # the model (spec profile) and virtio-queue
    "InvalidQueueSize": "queue", "MisalignedRing": "queue", "RingOutOfMemory": "queue", "InvalidHead": "queue",
    "DescriptorIndexOutOfRange": "chain", "ChainTooLong": "chain", "NestedIndirect": "chain",
    "IndirectWithNext": "chain", "InvalidIndirectTable": "chain", "DescriptorUnreadable": "memory",
    "ChainTooLarge": "length", "HeaderTooShort": "length", "DataTooShort": "length",
    # rust-vmm virtio-queue set-up and pop (Queue::try_set_*, QueueOwnedT::iter, AvailIter)
    "InvalidSize": "queue", "InvalidDescTableAlign": "queue", "InvalidAvailRingAlign": "queue",
    "InvalidUsedRingAlign": "queue", "QueueNotReady": "queue", "InvalidAvailRingIndex": "queue",
    "NoAvailableChain": "queue", "InvalidQueue": "queue",
    # rust-vmm virtio-vsock
    "DescriptorChainTooShort": "chain", "DescriptorLengthTooSmall": "length", "DescriptorLengthTooLong": "length",
    "FragmentedMemory": "memory", "InvalidHeaderInputSize": "length", "InvalidHeaderLen": "length",
    "InvalidMemoryAccess": "memory", "InvalidVolatileAccess": "memory",
    "UnexpectedReadOnlyDescriptor": "permission", "UnexpectedWriteOnlyDescriptor": "permission",
    # Firecracker / Cloud Hypervisor / libkrun vsock
    "UnreadableDescriptor": "permission", "UnwritableDescriptor": "permission",
    "QueueMissingDescriptor": "chain", "HdrDescTooSmall": "length", "BufDescTooSmall": "length",
    "BufDescMissing": "chain", "InvalidPktLen": "length", "GuestMemoryMmap": "memory", "GuestMemory": "memory",
}


def error_class(name: str, table: dict | None = None) -> str:
    if name == UNSUPPORTED:
        return "unsupported"
    return (table or ERROR_CLASS).get(name, ERROR_CLASS.get(name, "unknown"))


@dataclass(frozen=True, slots=True)
class Answer:
    ok: bool
    header: Header | None = None
    header_slices: tuple[tuple[int, int], ...] = ()
    data_slices: tuple[tuple[int, int], ...] = ()
    error: str | None = None
    error_class: str | None = None
    detail: str = ""
    title: str = ""  # a crash's site, what tells two crashes apart (targets.crash_title); "" if unknown

    @classmethod
    def reject(cls, name: str, kind: str, detail: str = "") -> "Answer":
        return cls(False, error=name, error_class=kind, detail=detail)

    @classmethod
    def fault(cls, kind: str, detail: str, title: str = "") -> "Answer":
        """The target crashed or hung on this case."""
        return cls(False, error="TargetCrashed" if kind == "crash" else "TargetHung", error_class=kind, detail=detail,
                   title=title)

    @property
    def faulted(self) -> bool:
        return self.error_class in FAULT_CLASSES

    @property
    def unsupported(self) -> bool:
        return self.error == UNSUPPORTED  # the protocol's name, whatever class a target gave it

    def to_json(self, id: int | None = None) -> dict:
        out = {} if id is None else {"id": id}
        if self.ok:
            out["ok"] = True
            if self.header is not None:
                out["header"] = self.header.to_json()
            out["header_slices"] = [list(s) for s in self.header_slices]
            out["data_slices"] = [list(s) for s in self.data_slices]
        else:
            out.update(ok=False, error=self.error, detail=self.detail)
        return out

    @classmethod
    def from_json(cls, obj, table: dict | None = None) -> "Answer":
        """An answer line from a target; raises ValueError naming what is wrong."""
        if not isinstance(obj, dict):
            raise ValueError("answer is not a JSON object")
        ok = obj.get("ok")
        if ok is False:
            name = obj.get("error")
            if not isinstance(name, str):
                raise ValueError("rejection without an \"error\" name")
            detail = obj.get("detail", "")
            return cls.reject(name, error_class(name, table), detail if isinstance(detail, str) else str(detail))
        if ok is not True:
            raise ValueError(f"\"ok\" is {ok!r}, not true or false")
        header = Header.from_json(obj["header"]) if obj.get("header") is not None else None
        return cls(True, header, _slices(obj, "header_slices"), _slices(obj, "data_slices"))


def _slices(obj: dict, key: str) -> tuple[tuple[int, int], ...]:
    raw = obj.get(key)
    if not isinstance(raw, list):
        raise ValueError(f"{key} is not a list")
    out = []
    for s in raw:
        if (not isinstance(s, list) or len(s) != 2 or type(s[0]) is not int or type(s[1]) is not int
                or s[0] < 0 or s[1] < 0):
            raise ValueError(f"{key} holds {s!r}, not a [guest address, length] pair")
        out.append((s[0], s[1]))
    return tuple(out)
