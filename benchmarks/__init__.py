"""turbohooks' benchmark suite: ``python -m benchmarks [--quick]`` (or ``make bench``) writes BENCHMARKS.md.

One module per group: :mod:`._ceilings` (what the machine and the libraries allow),
:mod:`._peers` (what a user would write instead), :mod:`._product` (turbohooks itself);
the minimal receiver (:mod:`._receiver`) and the peers (:mod:`._peer_apps`) run as
their own processes.
"""
