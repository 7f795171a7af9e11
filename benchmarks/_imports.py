"""What a webhook-only worker process imports: ``python -m benchmarks._imports [--runs N]``.

``turbohooks worker --integration webhook`` needs the worker and the integrations
registry; this runs ``from consumers import Worker; import integrations`` in fresh
interpreters under ``-X importtime`` and prints the median import time (the sum of
the top-level cumulative figures, the interpreter's own start-up left out), the
number of modules it loaded and which of the heavy libraries a worker should never
load are in ``sys.modules`` afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from typing import Final

__all__ = ("HEAVY", "WORKER_IMPORT", "ImportFigures", "measure")

WORKER_IMPORT: Final = "from consumers import Worker; import integrations"
# What the worker's modules must not import (the import-linter contract).
HEAVY: Final = ("sqlalchemy", "litestar", "aiohttp.web", "httpx")

_REPORT: Final = (
    "import sys, json\n"
    "print(json.dumps({'modules': sorted(sys.modules), 'heavy': [m for m in %r if m in sys.modules]}))"
)


@dataclass(frozen=True, slots=True)
class ImportFigures:
    milliseconds: float
    modules: int
    heavy: tuple[str, ...]


def _run(statement: str) -> tuple[float, set[str], list[str]]:
    code = f"{statement}\n{_REPORT % (HEAVY,)}"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    top_level_us = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        if not name.removeprefix(" ").startswith(" "):  # a top-level import: its name is not indented
            top_level_us += int(cumulative_us)
    return top_level_us / 1000, set(report["modules"]), list(report["heavy"])


def measure(statement: str = WORKER_IMPORT, runs: int = 5) -> ImportFigures:
    """The median over ``runs`` fresh interpreters, the bare interpreter's start-up subtracted."""
    timings: list[float] = []
    modules: set[str] = set()
    heavy: list[str] = []
    for _ in range(runs):
        baseline_ms, baseline_modules, _ = _run("pass")
        total_ms, modules, heavy = _run(statement)
        timings.append(total_ms - baseline_ms)
        modules -= baseline_modules
    return ImportFigures(statistics.median(timings), len(modules), tuple(heavy))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._imports", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters to take the median of (default 5)")
    parser.add_argument("--statement", default=WORKER_IMPORT, help=f"what to import (default: {WORKER_IMPORT!r})")
    args = parser.parse_args()
    figures = measure(args.statement, args.runs)
    heavy = ", ".join(figures.heavy) or "none"
    print(
        f"{args.statement}: {figures.milliseconds:.0f} ms of imports (median of {args.runs}), {figures.modules} modules"
    )
    print(f"  heavy modules loaded (of {', '.join(HEAVY)}): {heavy}")


if __name__ == "__main__":
    main()
