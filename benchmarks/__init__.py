"""turbohooks' benchmark suite: ``python -m benchmarks [--quick]`` (or ``make bench``) writes BENCHMARKS.md.

One module per group: :mod:`._ceilings` (what the machine and the libraries allow),
:mod:`._peers` (what a user would write instead), :mod:`._product` (turbohooks itself,
one module per part). What they share: :mod:`._results` (scale, figures, targets),
:mod:`._processes` (child processes, nats-server, the engine's settings) and
:mod:`._traffic` (the events, the receiver, timed bursts and paced runs). The report:
:mod:`._report` (BENCHMARKS.md, results.json, the README section), :mod:`._tables`
and :mod:`._plots`. The minimal receiver (:mod:`._receiver`) and the peers
(:mod:`._peer_apps`) run as their own processes. ``python -m benchmarks._imports``
measures what a webhook-only worker imports. A ``--quick`` run writes under
``build/bench/quick/``: only a full run refreshes the tracked report.
"""
