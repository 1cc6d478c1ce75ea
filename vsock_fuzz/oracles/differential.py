"""The differential oracle (warning, error when strict): agreement with the reference model under
the chosen profile, both verdicts and, when both accept, the header and the bytes under the slices.
"""

from __future__ import annotations

from .context import _Context, normalise, same_bytes
from .finding import oracle


@oracle("differential.model", "warning", "agreement with the reference model under the chosen profile")
def differential(ctx: _Context, strict: bool = False) -> None:
    ans, model = ctx.answer, ctx.model
    if ans.ok == model.ok and (not ans.ok or ans == model):
        return  # both reject (under whatever names), or the same answer
    sev = "error" if strict else None
    who = f"the model ({ctx.profile})"
    if ans.ok and not model.ok:
        ctx.emit(f"the target accepts a chain {who} rejects with {model.error}: {model.detail}",
                 f"accepts-rejected {model.error}", severity=sev)
    elif not ans.ok and model.ok:
        ctx.emit(f"the target rejects with {ans.error} ({ans.detail}) a chain {who} accepts",
                 f"rejects-accepted {ans.error}", severity=sev)
    elif ans.ok:
        if ctx.tx and ans.header != model.header:
            ctx.emit(f"the target decoded header {ans.header} but {who} decoded {model.header}",
                     "different-header", severity=sev)
        if ans.header_slices == model.header_slices and ans.data_slices == model.data_slices:
            return
        if not same_bytes(ans.header_slices, model.header_slices) or not same_bytes(ans.data_slices, model.data_slices):
            mem = ctx.mem
            got = (normalise(mem, ans.header_slices), normalise(mem, ans.data_slices))
            want = (normalise(mem, model.header_slices), normalise(mem, model.data_slices))
            ctx.emit(f"the target reports header_slices {list(got[0])}, data_slices {list(got[1])}; "
                     f"{who} reports {list(want[0])}, {list(want[1])}", "different-slices", severity=sev)

