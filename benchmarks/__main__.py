"""``python -m benchmarks [--quick] [--out BENCHMARKS.md]``: run the suite, write the report and the plots."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from . import _ceilings, _peers, _product
from ._plots import plot
from ._processes import ROOT, Children
from ._report import Context, readme_section, update_readme, write_json, write_markdown
from ._results import Results, Scale
from ._traffic import Receiver

GROUPS = ("ceilings", "peers", "product", "load")
# A quick run is a smoke run: its report goes here (gitignored), never over the tracked
# BENCHMARKS.md and docs/bench/, which only a full run refreshes.
QUICK_DIR = ROOT / "build" / "bench" / "quick"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="turbohooks' benchmark suite: ceilings, peers and the product, measured in one run.",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"smaller counts, about a minute; writes under {_rel(QUICK_DIR)}/"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"the report (default: BENCHMARKS.md; with --quick {_rel(QUICK_DIR / 'BENCHMARKS.md')})",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        default=None,
        help=f"where the PNG plots and results.json go (default: docs/bench; with --quick {_rel(QUICK_DIR)})",
    )
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups among {', '.join(GROUPS)}")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the worker at saturation and under the real-world load (adds ~20 s)",
    )
    parser.add_argument("--readme", action="store_true", help="also rewrite README.md's Performance section")
    parser.add_argument("--timeout", type=float, default=None, help="stop everything after this many seconds")
    return parser


def _outputs(args: argparse.Namespace) -> None:
    """Fill in ``--out`` and ``--plots``: the tracked report for a full run, ``QUICK_DIR`` for a quick one."""
    if args.out is None:
        args.out = QUICK_DIR / "BENCHMARKS.md" if args.quick else ROOT / "BENCHMARKS.md"
    if args.plots is None:
        args.plots = QUICK_DIR if args.quick else ROOT / "docs" / "bench"


async def _run(args: argparse.Namespace, command: str) -> int:
    scale = Scale(quick=args.quick)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        print(f"benchmarks: unknown group(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    results = Results()
    failures: list[str] = []
    started_at = datetime.now(UTC)
    started = time.monotonic()
    load_before = os.getloadavg()
    print(f"benchmarks: {'quick' if args.quick else 'full'} run of {', '.join(groups)}, report: {args.out}", flush=True)
    with tempfile.TemporaryDirectory(prefix="turbohooks-bench-") as tmp:
        workdir = Path(tmp)
        async with Children() as children, Receiver.running(children, max_seconds=3600) as receiver:
            for group in groups:
                group_started = time.monotonic()
                try:
                    if group == "ceilings":
                        await _ceilings.run(results, scale, workdir / group, children, receiver)
                    elif group == "peers":
                        await _peers.run(results, scale, workdir / group, children, receiver)
                    elif group == "load":
                        profile_dir = args.plots if args.profile else None
                        await _product.run_load(results, scale, workdir / group, children, profile_dir=profile_dir)
                    else:
                        profile_dir = args.plots if args.profile else None
                        await _product.run(results, scale, workdir / group, children, receiver, profile_dir=profile_dir)
                except Exception as exc:  # noqa: BLE001 - one failed group must not lose the others' figures
                    traceback.print_exc()
                    failures.append(f"{group}: {type(exc).__name__}: {exc}")
                print(f"  [{group}: {time.monotonic() - group_started:.0f}s]", flush=True)
    if "product" not in groups:
        results.notes.append("the product group was not run (--only)")
    results.notes.extend(_standing_notes())
    context = Context(
        quick=args.quick,
        started=started_at,
        wall=time.monotonic() - started,
        load_before=load_before,
        load_after=os.getloadavg(),
        command=command,
        failures=failures,
    )
    plots = plot(results, args.plots)
    write_markdown(results, context, plots, args.out)
    write_json(results, context, args.plots / "results.json")
    if args.readme:
        update_readme(ROOT / "README.md", readme_section(results, context))
    print(f"benchmarks: wrote {args.out} and {len(plots)} plots in {context.wall:.0f}s", flush=True)
    return 1 if failures else 0


def _standing_notes() -> list[str]:
    return [
        "The payload template case renders a ~1 KiB JSON body from the sample event; the target is at most 50 µs.",
        "httpx over the `httpx-aiohttp` transport is not measured: the package is not a dependency of the project.",
        "The peers post without signing and keep no delivery log: they are the floor of their approach, "
        "not feature-equivalent to turbohooks.",
        "Two worker copies share the machine's 2 cores with nats-server, the recorder, the receiver and "
        "this driver, so 2× is out of reach here by construction; the ratio shows how much of the second "
        "core a second copy can still use.",
        "QUICK mode measures fewer events, fewer idle subscriptions (200, not 1,000) and a 4,000-event "
        "backlog: the targets that speak of 1,000 subscriptions or 100,000 events are then marked with the "
        "scale they were measured at.",
        "QUICK mode runs the load group with 200 subscriptions, 500 deliveries/s for 10 s (full: 1,000, "
        "2,000/s for 60 s), a 3 s wide fan-out and a 10,000-event moonshot backlog (full: 60,000).",
    ]


def main() -> None:
    args = _parser().parse_args()
    _outputs(args)
    command = "make bench QUICK=1" if args.quick else "make bench"
    if os.environ.get("BENCH_COMMAND"):
        command = os.environ["BENCH_COMMAND"]
    elif sys.argv[0].endswith("__main__.py") and not os.environ.get("MAKELEVEL"):
        command = "python -m benchmarks " + shlex.join(sys.argv[1:])
    import uvloop

    async def guarded() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        limit = args.timeout or (600.0 if args.quick else 3600.0)
        try:
            return await asyncio.wait_for(_run(args, command), limit)
        except TimeoutError:
            print(f"benchmarks: stopped after {limit:.0f}s", file=sys.stderr)
            return 3
        except asyncio.CancelledError:
            print("benchmarks: stopped by SIGTERM; every process it started was stopped", file=sys.stderr)
            return 143

    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(uvloop.run(guarded()))
    sys.exit(130)


if __name__ == "__main__":
    main()
