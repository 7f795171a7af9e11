"""``python -m tests.chaos [--short] [--scenario NAME] [--events N] [--rate R] [--write-docs]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
import time

from ._harness import ROOT
from ._report import markdown, table, write
from ._run import Options, Result, run_scenario
from ._scenarios import CLUSTER_SCENARIOS, SCENARIOS, by_name


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="short faults and 1,000 events (unless --events)")
    parser.add_argument("--scenario", action="append", help="run only this scenario (repeatable)")
    parser.add_argument("--events", type=int, help="events per scenario (default 5000, short 1000)")
    parser.add_argument("--rate", type=float, default=500.0, help="events per second (default 500)")
    parser.add_argument("--no-cluster", action="store_true", help="skip the 3-node cluster scenarios")
    parser.add_argument("--pg-restart", action="store_true", help="really restart the machine's PostgreSQL")
    parser.add_argument("--keep", action="store_true", help="keep every scenario's work dir (logs, stores)")
    parser.add_argument("--write-docs", action="store_true", help="write the table to docs/reliability.md")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> int:
    everything = (*SCENARIOS, *CLUSTER_SCENARIOS)
    if args.list:
        for scenario in everything:
            print(f"{scenario.name:18} {scenario.description}")
        return 0
    try:
        chosen = [by_name(n) for n in args.scenario] if args.scenario else list(everything)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    if args.no_cluster:
        chosen = [s for s in chosen if s.nats != "cluster"]
    events = args.events or (1_000 if args.short else 5_000)
    options = Options(events=events, rate=args.rate, short=args.short, pg_restart=args.pg_restart, keep=args.keep)
    results: list[Result] = []
    for scenario in chosen:  # one at a time: each one loads the machine
        began = time.monotonic()
        print(f"--- {scenario.name}: {scenario.description}", flush=True)
        result = await run_scenario(scenario, options)
        results.append(result)
        print(table([result]), f"\n({time.monotonic() - began:.0f}s)\n", flush=True)
    print(table(results))
    if args.write_docs:
        command = "python -m tests.chaos " + shlex.join(sys.argv[1:])
        write(ROOT / "docs" / "reliability.md", markdown(results, everything, options, command.strip()))
        print(f"\nwritten to {ROOT / 'docs' / 'reliability.md'}")
    return 0 if all(r.verdict in ("PASS", "SKIPPED") for r in results) else 1


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(_main(_parse(sys.argv[1:]))))


if __name__ == "__main__":
    main()
