"""The determinism oracle (error): the same bytes give the same answer, so no state leaks between
packets.
"""

from __future__ import annotations

from ..model.answer import Answer
from .context import _Context
from .finding import oracle


@oracle("determinism.repeat", "error", "the same bytes give the same answer (no state leaks between packets)")
def determinism(ctx: _Context, repeat: Answer) -> None:
    a, b = ctx.answer, repeat
    if (a.ok, a.error, a.header, a.header_slices, a.data_slices) != (b.ok, b.error, b.header, b.header_slices, b.data_slices):
        first = "accepted" if a.ok else f"rejected with {a.error}"
        second = "accepted" if b.ok else f"rejected with {b.error}"
        what = f"first {first}, then {second}" if (a.ok, a.error) != (b.ok, b.error) else "different slices or header"
        ctx.emit(f"the same case answered twice gave two answers: {what}", f"{a.ok}/{b.ok}", answer=b)

