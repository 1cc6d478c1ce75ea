"""Hypothesis profiles and the project's example database.

HYPOTHESIS_PROFILE picks the profile: `dev` (quick, the default on a desk),
`ci` (the default when CI is set; sized so the suite stays inside CI's
budget), `fuzz` (long runs: `HYPOTHESIS_PROFILE=fuzz make test`).
Failing examples are kept in `tests/hypothesis-examples` and replayed first
on the next run, so a found bug stays found; commit them with the fix's test.
(Not under `.hypothesis/`: Hypothesis writes a `.gitignore` there that hides
everything in it from git.)
"""

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

EXAMPLES = Path(__file__).resolve().parent / "hypothesis-examples"
DATABASE = DirectoryBasedExampleDatabase(str(EXAMPLES))

# Cases are built by composite strategies that draw much; the model is fast but
# a run of large chains is not, so no deadline and no "too slow" failure.
_COMMON = dict(database=DATABASE, deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

settings.register_profile("dev", max_examples=60, **_COMMON)
settings.register_profile("ci", max_examples=150, **_COMMON)
settings.register_profile("fuzz", max_examples=20_000, **_COMMON)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
settings.load_profile(PROFILE)
