"""What every target shares: TargetError, the protocol's defaults, the device it describes, and the
in-process targets."""

from __future__ import annotations

import os

from ..case.value import Case
from ..model.answer import Answer
from ..model.device import ASSUMED, Device, DeviceError
from ..model.packet import PROFILES, parse
from .frames import MODE as FRAMES

PROTOCOL = 1
DEFAULT_TIMEOUT = 2.0      # seconds per case
START_TIMEOUT = 10.0       # seconds for a (re)start and hello
FAST_MODES = (FRAMES,)     # transports offered in hello (docs/protocol-extensions.md)
# Microseconds a target is asked in hello to poll its input before it sleeps on it, when a CPU
# is free for it (docs/protocol-extensions.md, "Polling"): rust-vmm 0.12.0's campaign ran 1.4x
# the cases/s with it, one worker on two CPUs, and a third of them with two workers.
POLL_US = 200
MAX_RESTARTS = 10          # consecutive faults before a campaign gives up on a target


class TargetError(Exception):
    """A target that cannot be used at all (bad spec, will not start, refuses hello)."""


class Described:
    """The device a target wraps (model/device.py): what the target says of it (`declared`:
    hello's `device` object, a py: callable's `device` attribute), with what the command
    line says over it, which wins. `device` is what the oracles judge by."""

    device: Device = ASSUMED
    _declared: Device = ASSUMED
    _given: tuple | None = None  # (a --device file's Device or None, fields) from the command line

    def declare(self, obj, source: str) -> None:
        """The target's own description (a JSON object, or None for none)."""
        try:
            self._declared = ASSUMED if obj is None else Device.from_json(obj, source)
        except DeviceError as e:
            raise TargetError(f"{self.name}: {source}: {e}") from None
        self._settle()

    def give_device(self, base: Device | None = None, **fields) -> None:
        """What the command line says of the device: a whole description and/or single fields."""
        self._given = (base, fields)
        self._settle()

    def _settle(self) -> None:
        device = self._declared
        if self._given is not None:
            base, fields = self._given
            device = (base or device).override("command line", **fields)
        self.device = device


class _InProcess(Described):
    """A target in this process: nothing to restart, nothing to close."""

    def parse_many(self, cases) -> list[Answer]:
        return [self.parse(case) for case in cases]

    def reset_backoff(self) -> None:
        pass

    def close(self) -> None:
        pass


class ModelTarget(_InProcess):
    def __init__(self, profile: str = "spec"):
        if profile not in PROFILES:
            raise TargetError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
        self.profile = profile
        self.name = "reference" if profile == "spec" else f"reference:{profile}"
        from .. import __version__
        self.version = __version__

    def parse(self, case: Case) -> Answer:
        return parse(case, self.profile, self.device)


class PythonTarget(_InProcess):
    """A callable in this process; an exception it raises is a crash on that case."""

    def __init__(self, func, name: str):
        self.func = func
        self.name = name
        self.version = getattr(func, "version", "")
        # A bound method's object may say it (the zoo's devices do), else the callable itself.
        owner = getattr(func, "__self__", None)
        self.declare(getattr(owner, "device", None) or getattr(func, "device", None), "the callable's device")

    def parse(self, case: Case) -> Answer:
        try:
            out = self.func(case)
        except Exception as e:  # the target under test is buggy by definition
            return Answer.fault("crash", f"raised {type(e).__name__}: {e}")
        if isinstance(out, Answer):
            return out
        try:
            return Answer.from_json(out)
        except (ValueError, KeyError, TypeError) as e:
            return Answer.fault("crash", f"returned an invalid answer ({e}): {out!r:.200}")


def poll_us(processes: int) -> int:
    """The poll hello asks of each target when `processes` harness processes each drive one
    (POLL_US, or 0): only if every target has a CPU of its own beside them."""
    return POLL_US if 2 * processes <= len(os.sched_getaffinity(0)) else 0
