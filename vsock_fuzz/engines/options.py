"""What a campaign was asked to do: `vsock-fuzz fuzz`'s options (cli.fuzz builds them,
engines.campaign checks and runs them, engines.pool hands them to the workers)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Options:
    target: str
    max_time: float | None = 60.0
    runs: int | None = None
    engine: str = "atheris"  # atheris | hypothesis | both
    jobs: int = 1
    out: str = "fuzz-out"
    seed: int = 0
    profile: str = "spec"
    strict: bool = False
    fail_on: str = "error"
    corpus: list = field(default_factory=list)
    timeout: float = 2.0
    dict: str | None = None
    minimize_time: float | None = None  # seconds for all minimization; None: a share of max_time
    stop_on: tuple = ()  # stop at the first finding of one of these oracles or families ("fail": at or above fail_on)
    # open_target's cmd: limits besides timeout (JSON-able). Not default_factory=dict:
    # the field `dict` above shadows the builtin in this class body.
    target_options: dict = field(default_factory=lambda: {})
    verbose: bool = False      # the summary lists every finding, not one entry per root cause
    fail_on_new: bool = False  # exit 1 only for root causes the output directory has not seen before
    accepted: dict = field(default_factory=lambda: {})  # root-cause key -> why it is accepted (--accept)
    coverage: str | None = None  # target | harness | both; None: probe() settles it (target when the target takes the channel)
    quiet: bool = False        # no pulse lines
