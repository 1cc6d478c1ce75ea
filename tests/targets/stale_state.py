"""Stale queue state: the device remembers the last chain it popped (its head and head
descriptor) and takes the same chain, offered again, for one it has already used, as a device
that does not reset its view of the ring between uses does. Every other answer is right;
only asking the same case twice shows the bug (determinism)."""

from vsock_fuzz.zoo._device import Reject, SimpleDevice, run


class Device(SimpleDevice):
    name = "stale state (the last chain popped kept across packets)"

    def __init__(self):
        self.last = None

    def pop(self, host, ring) -> int:
        head = super().pop(host, ring)
        seen = (ring.desc_table, head, host.peek(ring.desc_table + 16 * head, 16))
        stale, self.last = seen == self.last, seen
        if stale:  # BUG: state from the previous packet decides this one
            raise Reject("QueueEmpty", f"chain {head} taken for one already used")
        return head


parse = Device().parse

if __name__ == "__main__":
    run(Device())
