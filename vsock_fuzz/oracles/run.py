"""`check`: every oracle on one answer; `evaluate`: a target and the model on one case, then `check`.

What the rust-vmm profile of the model shows (its documented gaps, nothing
under safety or fidelity): interop.linux-rejected for Linux >= 6.17
multi-fragment tx; conformance.valid-rejected for spec-valid layouts it
refuses (header split over descriptors, buffers crossing adjacent regions,
rx buffers longer than the header plus max_data_size, a lone 44-byte rx
buffer, 2^32-byte chains); conformance.stream-gap when a head with payload
also has NEXT; conformance.malformed-accepted for malformed chain tails its
lazy walk never reaches. tests/test_strategies.py holds it to that.
"""

from __future__ import annotations

import shlex
from itertools import count
from weakref import WeakKeyDictionary

from ..case.value import Case
from ..model.answer import Answer
from ..model.device import ASSUMED, Device
from ..model.packet import Reading, parse, readings
from ..targets import ModelTarget
from .conformance import malformed_accepted, stream_gap, valid_rejected
from .context import _Context
from .determinism import determinism
from .differential import differential
from .fidelity import data_len, header_bytes, header_size, max_data_size, slice_overlap, stream_order
from .finding import ORACLES, SEVERITY_ORDER, Finding
from .interop import content_rejection, linux_rejected, linux_slices
from .triage import explained
from .safety import direction, no_crash, no_hang, read_writable, slice_in_chain, slice_in_memory, slice_in_region

# Reports list the oracles in the registry's order: family by family, but for conformance.stream-gap,
# which follows fidelity.stream-order, the other half of the same stream scan. No import order of the
# family modules registers them so, hence this one reordering at import (an oracle left out of
# _ORDER keeps its place ahead of those in it).
_ORDER = (no_crash, no_hang, slice_in_memory, slice_in_region, slice_in_chain, direction, read_writable,
          header_size, header_bytes, data_len, max_data_size, slice_overlap, stream_order, stream_gap,
          linux_rejected, linux_slices, valid_rejected, malformed_accepted, differential, determinism)
ORACLES.update({func.oracle.name: ORACLES.pop(func.oracle.name) for func in _ORDER})

# Oracles that read an accepted answer; those that read a rejected one. Those of _ON_WALK read the
# answer and the walked chain alone, not the model's answer: two readings that walk the chain alike
# (the model's and a refusal the offer allows) share their findings.
_ON_WALK = (slice_in_memory, slice_in_region, slice_in_chain, direction, read_writable, header_size, header_bytes,
            data_len, max_data_size, slice_overlap, stream_order, stream_gap, linux_slices)
_ON_ACCEPT = _ON_WALK + (malformed_accepted,)
_ON_REJECT = (linux_rejected, valid_rejected)


def check(case: Case, answer: Answer, *, model: Answer | None = None, repeat: Answer | None = None,
          profile: str = "spec", strict: bool = False, device: Device = ASSUMED, skip: bool = True) -> list[Finding]:
    """Every oracle on one answer. `model`: the model's answer (differential);
    `repeat`: a second answer to the same case (determinism); `device`: what the target's
    device offers. When its offer allows other answers than the model's (packet.readings),
    the answer is judged against each and the reading that explains it best is kept: a
    finding stands only when no answer the device may legally give explains the target's.
    `skip=False` runs every oracle even on an answer that `agrees` with a reading."""
    if skip and model is not None and profile == "spec" and agrees(answer, model):
        return explained(repeated(case, answer, repeat, profile, model, device))  # only the answers' agreement is left
    if device.features is None or model is None or answer.unsupported:
        return explained(_check(case, answer, model, repeat, profile, strict, device, None))
    alternatives = readings(case, profile, device)
    if len(alternatives) == 1:
        return explained(_check(case, answer, model, repeat, profile, strict, device, None))
    if skip and profile == "spec" and any(agrees(answer, r.answer) for r in alternatives[1:]):
        return explained(repeated(case, answer, repeat, profile, model, device))
    walks: dict = {}
    judged = [_check(case, answer, r.answer if i else model, repeat, profile, strict, device, r, walks=walks)
              for i, r in enumerate(alternatives)]
    return explained(min(judged, key=_weight))


def agrees(answer: Answer, model: Answer) -> bool:
    """Whether `answer` is the spec model's `model` (or another of its legal readings'): the same
    verdict and, when accepted, the same slices and tx header. The model keeps every rule, so no
    oracle but determinism can fire on such an answer (tests/test_oracles.py holds every reading
    of every device shape to that), and `check` skips them: only answers that differ pay for the
    oracles. Not under another profile: the rust-vmm model's own answers break rules by design."""
    if answer.ok != model.ok or answer.faulted or answer.unsupported:
        return False
    return not answer.ok or (answer.header_slices == model.header_slices and answer.data_slices == model.data_slices
                             and (model.header is None or answer.header == model.header))


def _weight(findings: list[Finding]) -> tuple[int, int, int]:
    """The worst severity, then the slices the reading leaves outside the chain, then the count:
    of two readings equally severe, the one whose chain holds the slices the device used
    explains the answer (libkrun writing rx data into an INDIRECT buffer it reads as plain is
    safety.direction under that reading, not slice-in-chain under the table's)."""
    return (max((SEVERITY_ORDER[f.severity] for f in findings), default=-1),
            sum(f.oracle == "safety.slice-in-chain" for f in findings), len(findings))


def _check(case: Case, answer: Answer, model: Answer | None, repeat: Answer | None, profile: str,
           strict: bool, device: Device, reading: Reading | None, known: tuple | None = None,
           walks: dict | None = None) -> list[Finding]:
    """The oracles on `answer` under one reading. `known`: judge's `refusal` facts; `walks`: the
    findings of _ON_WALK per walked chain, shared by the readings of one `check`."""
    out: list[Finding] = []
    if answer.unsupported:
        return out  # the adapter's limit, not the device's verdict (docs/protocol.md)
    ctx = _Context(case, answer, out, profile, model, device, reading)
    if known is not None:  # the compiled core's facts of a refused chain (judge's `refusal`): no walk
        ctx.traits, ctx.indirect = known
        ctx._linux = None
    if answer.faulted:
        ctx.run(no_crash)
        ctx.run(no_hang)
    else:
        if answer.ok:
            walk = None if walks is None else walks.get(id(ctx.walked))
            if walk is None:
                for func in _ON_WALK:
                    ctx.current = func.oracle
                    func(ctx)
                if walks is not None:
                    walks[id(ctx.walked)] = out[:]
            else:
                out += walk
            ctx.run(malformed_accepted)
        elif ctx.spec_answer().ok:
            # A chain the spec model rejects is neither a Linux layout nor spec-valid.
            for func in _ON_REJECT:
                ctx.run(func)
        if model is not None and not model.faulted:
            ctx.run(differential, strict)
    out += repeated(case, answer, repeat, profile, model, device, reading)
    return out


def repeated(case: Case, answer: Answer, repeat: Answer | None, profile: str, model: Answer | None,
             device: Device = ASSUMED, reading: Reading | None = None) -> list[Finding]:
    """What a second answer to the case shows: a crash or hang the first did not, two answers
    that differ (determinism)."""
    out: list[Finding] = []
    if repeat is not None:
        if repeat.faulted and not answer.faulted:
            rctx = _Context(case, repeat, out, profile, model, device, reading)
            rctx.run(no_crash)
            rctx.run(no_hang)
        _Context(case, answer, out, profile, model, device, reading).run(determinism, repeat)
    return out


_ASKED = count(1)  # cases evaluate() has judged in this process: the determinism sample's schedule


def target_spec(target) -> str:
    """The spec that opens `target` again (for reproduce commands)."""
    argv = getattr(target, "argv", None)
    return "cmd:" + shlex.join(argv) if argv else getattr(target, "name", "TARGET")


def evaluate(target, case: Case, *, profile: str = "spec", strict: bool = False,
             determinism: int = 1) -> tuple[Answer, list[Finding]]:
    """Run the target and the model on `case`, then `check`; the target again for determinism
    on one case in `determinism` (1, True: every case; 0, False: none) and on every case with
    a finding, but for the reference.

    The case is first fitted to the target's device (Device.fit: its fixed max_data_size,
    only memory its adapter maps); findings carry the case as sent. An `Unsupported` answer
    is judged by no oracle."""
    case = getattr(target, "device", ASSUMED).fit(case)
    return judge(target, case, target.parse(case), profile=profile, strict=strict, determinism=determinism)


def judge(target, case: Case, answer: Answer, *, profile: str = "spec", strict: bool = False,
          determinism: int = 1, sent=None, refusal: tuple | None = None) -> tuple[Answer, list[Finding]]:
    """`evaluate` once the target has answered `case` (as sent: fitted to its device). `sent`: the
    object the target was given, when not `case` (the compiled core's, which encodes itself
    faster), for the determinism oracle's second ask (which a CommandTarget may have posted
    already: engines.percase). `refusal`: (model answer, layout traits, indirect) when `answer`
    refuses a chain that is no Linux layout and whose one reading the spec model accepts, as
    the compiled core works them out (core/src/refusal.rs): the oracles then need no walk."""
    device = getattr(target, "device", ASSUMED)
    if answer.unsupported:
        return answer, []
    # The reference model keeps no state between cases (packet.parse is a pure function of the
    # case; tests hold it to that): asking it twice cannot differ. Any other target is asked again.
    model_target = isinstance(target, ModelTarget)
    again = determinism and not model_target and not answer.faulted
    if model_target or sum(len(w.data) for w in case.writes) > JUDGED_BYTES:
        # The model's answers are its readings, judged at once; a large case seldom comes again.
        model, findings = _judged(target, case, answer, profile, strict, device, refusal)
    else:
        judged = _JUDGED.setdefault(target, {})
        memo = (case, answer, profile, strict)
        kept = judged.get(memo)
        if kept is None:
            if len(judged) >= JUDGED_KEPT:
                judged.clear()
            kept = judged[memo] = _judged(target, case, answer, profile, strict, device, refusal)
        model, findings = kept
    findings = list(findings)
    # State kept between packets shows as answers that differ, on any case: a sample of them is
    # asked again (a second ask costs as much as the first), and every case that already broke a rule.
    if again and (findings or sampled(determinism)):
        repeat = target.parse(case if sent is None else sent)
        findings += stamped(repeated(case, answer, repeat, profile, model, device), target)
    return answer, findings


# A campaign meets the same answer to the same case again (a quarter of the answers that differ
# in a rust-vmm 0.12.0 campaign: libFuzzer's mutations of bytes the case does not read, cases
# the device's limits fit alike): every oracle but determinism is a function of the two, and of
# the target's answers to content probes (kept too, below), so their findings are kept per target.
_JUDGED: WeakKeyDictionary = WeakKeyDictionary()
JUDGED_KEPT = 4096
JUDGED_BYTES = 4096  # bytes a kept case writes at most: 16 MiB of cases per target


def forget() -> None:
    """Drop the findings kept for answers judged before (a benchmark times judging afresh)."""
    _JUDGED.clear()


def _judged(target, case: Case, answer: Answer, profile: str, strict: bool, device: Device,
            refusal: tuple | None = None) -> tuple[Answer | None, tuple[Finding, ...]]:
    """`judge`'s model answer and findings but determinism's, stamped with `target`."""
    if refusal is not None:  # one reading, which accepts: check's path without the readings
        model, *known = refusal
        findings = explained(_check(case, answer, model, None, profile, strict, device, None, known))
        return model, tuple(stamped(findings, target))
    # The reference target under the same profile is the model: its answer is the model's
    # (parse is pure), which saves a third of the fuzz loop's parsing. A crash or hang is judged
    # by safety.crash and safety.hang alone, which read no model answer: the model is not run
    # on it. Under a fuzz worker that also keeps crashing inputs out of libFuzzer's corpus: the
    # model's (instrumented) walk is the coverage such an input would add, and atheris does not
    # pass TestOneInput's return value (-1, "reject this input") on to libFuzzer.
    if answer.faulted:
        model = None
    elif isinstance(target, ModelTarget) and target.profile == profile:
        model = answer
    else:
        model = parse(case, profile, device)
    findings = check(case, answer, model=model, profile=profile, strict=strict, device=device)
    # A Linux layout refused in the pre-6.2 layout too: the device refuses the content (its addressing,
    # say), not the layout. The interop oracle stays quiet; the differential warning says the rest.
    if any(f.oracle == "interop.linux-rejected" for f in findings) and \
            content_rejection(case, answer, _probe_asker(target, device), device):
        findings = explained([f for f in findings if f.oracle != "interop.linux-rejected"])
    return model, tuple(stamped(findings, target))


# A campaign meets the same header and payload again and again (31 distinct content probes
# among 236 answers refusing a Linux layout, over 3,000 rust-vmm 0.12.0 answers that differ):
# each probe is asked once per target. A device whose answer to one probe would change from
# one ask to the next changes its answers to any case, which the determinism oracle names.
_PROBED: WeakKeyDictionary = WeakKeyDictionary()
PROBES_KEPT = 256


def _probe_asker(target, device: Device):
    """interop.content_rejection's `ask` for `target`: its answer to a probe it was asked before,
    else a fresh one (a crash or hang is not kept: the next probe asks again)."""
    kept = _PROBED.setdefault(target, {})

    def ask(probe: Case) -> Answer:
        answer = kept.get(probe)
        if answer is None:
            answer = target.parse(device.fit(probe))
            if not answer.faulted:
                if len(kept) >= PROBES_KEPT:
                    kept.clear()
                kept[probe] = answer
        return answer
    return ask


def sampled(determinism: int) -> bool:
    """Whether this case is one the determinism sample asks again (one in `determinism`)."""
    return not next(_ASKED) % determinism  # no comparison for atheris to trace: called on every case


def stamped(findings: list[Finding], target) -> list[Finding]:
    """The findings with the spec that opens `target` again."""
    if findings:
        spec = _SPECS.get(target)
        if spec is None:
            spec = _SPECS[target] = target_spec(target)
        findings = [f.but(target=spec) for f in findings]
    return findings


_SPECS: WeakKeyDictionary = WeakKeyDictionary()  # target_spec per target: shlex.join costs more than a stamp
