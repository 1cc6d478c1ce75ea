"""List the model's branches no engine reached, from `coverage json` output.

    python scripts/coverage_gaps.py coverage.json

One line per missed branch, `file:line -> line` (or `-> exit`), with the
source line, so a VMM engineer can see which rule no test, Hypothesis
strategy or fuzz input exercised. Used by `make coverage`.
"""

import json
import sys


def gaps(report: dict):
    """(file, from line, to line or None for the function's exit) per missed branch, in file order."""
    for path, data in sorted(report["files"].items()):
        for src, dst in sorted(data.get("missing_branches", [])):
            yield path, src, (dst if dst > 0 else None)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        report = json.load(f)
    sources: dict[str, list[str]] = {}
    missed = list(gaps(report))
    for path, src, dst in missed:
        if path not in sources:
            with open(path) as f:
                sources[path] = f.read().splitlines()
        text = sources[path][src - 1].strip() if src <= len(sources[path]) else ""
        print(f"{path}:{src} -> {dst if dst else 'exit'}    {text}")
    total = report["totals"]
    print(f"{len(missed)} of {total['num_branches']} model branches reached by no engine")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
