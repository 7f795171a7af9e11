"""``import publishers`` loads the publisher only: the processors and the simulator come on first use."""

from __future__ import annotations

import subprocess
import sys

import publishers


def test_processors_and_simulator_are_not_imported_eagerly() -> None:
    code = (
        "import sys, publishers; "
        "print(sorted(m for m in sys.modules if m.startswith(('publishers.processors', 'publishers._simulator'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_public_names_stay() -> None:
    for name in publishers.__all__:
        assert getattr(publishers, name) is not None, name
    from publishers.processors import MilestoneProcessor, Scheduler

    assert publishers.Scheduler is Scheduler and publishers.MilestoneProcessor is MilestoneProcessor
