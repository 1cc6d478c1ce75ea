"""Targets: one interface, `answer = target.parse(case)`.

Specs (command line and API alike):
    reference             the model, spec profile
    reference:rust-vmm    the model, rust-vmm profile
    py:module:callable    a Python callable taking a Case, returning an Answer
                          or a protocol answer dict
    cmd:COMMAND LINE      an external program speaking protocol v1

Every target has `parse(case)` and `parse_many(cases)` (a list of answers in
order); for a `cmd:` target parse_many pipelines the cases, which is several
times faster than one round trip per case.
`reset_backoff()` forgets the faults in a row of a `cmd:` target (see
CommandTarget's restart policy); a no-op for the others.
"""

from __future__ import annotations

import importlib
import shlex

from ..model.device import LIMITS, Device, DeviceError, parse_features
from .base import DEFAULT_TIMEOUT, FAST_MODES, MAX_RESTARTS, START_TIMEOUT, ModelTarget, PythonTarget, TargetError
from .command import CommandTarget


def open_target(spec: str, *, timeout: float = DEFAULT_TIMEOUT, error_classes: dict | None = None,
                start_timeout: float = START_TIMEOUT, max_restarts: int = MAX_RESTARTS,
                rlimit_as: int | None = None, rlimit_cpu: int | None = None,
                modes: tuple[str, ...] = FAST_MODES, die_with_parent: bool = False,
                device: dict | None = None, env: dict | None = None, poll: int | None = None,
                crash_frames: bool = True):
    """A target from its spec; raises TargetError naming what is wrong.

    The keyword arguments after `error_classes` but `device` apply to `cmd:`
    targets only (see CommandTarget); `modes=()` keeps a target on plain
    protocol v1; `env` adds variables to its environment; `poll`: the microseconds hello
    asks it to poll its input (None: base.poll_us(1)); `crash_frames`: whether hello offers
    crash frames (docs/protocol-extensions.md). `device` is what
    the command line says of the device (JSON-able, so a fuzz worker gets it
    too): `description` (a --device file's object) and `source`, `features`
    (names), and the limits of model/device.py; it wins over what the target
    declares.
    """
    target = _open(spec, timeout=timeout, error_classes=error_classes, start_timeout=start_timeout,
                   max_restarts=max_restarts, rlimit_as=rlimit_as, rlimit_cpu=rlimit_cpu, modes=modes,
                   die_with_parent=die_with_parent, env=env, poll=poll, crash_frames=crash_frames)
    if device:
        try:
            base = device.get("description")
            base = None if base is None else Device.from_json(base, device.get("source") or "--device")
            features = device.get("features")
            features = None if features is None else parse_features(features, "--device-features")
        except DeviceError as e:
            raise TargetError(str(e)) from None
        target.give_device(base, features=features, **{k: device.get(k) for k in LIMITS})
    return target


def _open(spec: str, *, timeout, error_classes, start_timeout, max_restarts, rlimit_as, rlimit_cpu, modes,
          die_with_parent, env, poll, crash_frames):
    kind, _, rest = spec.partition(":")
    if kind == "reference":
        return ModelTarget(rest or "spec")
    if kind == "py":
        module, _, attr = rest.partition(":")
        if not module or not attr:
            raise TargetError(f"py: target {spec!r} is not py:module:callable")
        try:
            func = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise TargetError(f"cannot load {spec!r}: {e}") from None
        return PythonTarget(func, spec)
    if kind == "cmd":
        try:
            argv = shlex.split(rest)
        except ValueError as e:
            raise TargetError(f"cannot split {rest!r}: {e}") from None
        return CommandTarget(argv, timeout=timeout, start_timeout=start_timeout, error_classes=error_classes,
                             max_restarts=max_restarts, rlimit_as=rlimit_as, rlimit_cpu=rlimit_cpu, modes=modes,
                             die_with_parent=die_with_parent, env=env, poll=poll, crash_frames=crash_frames)
    raise TargetError(f"unknown target {spec!r}: use reference[:PROFILE], py:module:callable or cmd:COMMAND")
