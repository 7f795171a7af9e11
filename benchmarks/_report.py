"""BENCHMARKS.md, its plots and the README's "Performance" section, from one run's results."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import psutil

from streams import find_nats_server

from ._results import Results

__all__ = (
    "Context",
    "machine",
    "plot",
    "readme_section",
    "update_readme",
    "versions",
    "write_json",
    "write_markdown",
)

_PACKAGES: Final = ("nats-py", "aiohttp", "httpx", "msgspec", "uvloop", "faststream", "turbohooks")
_SHORT: Final = {
    "peer.background_httpx": "(a) background task + httpx",
    "peer.nats_httpx": "(b) nats-py + httpx",
    "peer.faststream_httpx": "(c) FastStream + httpx",
    "peer.nats_aiohttp": "(d) nats-py + aiohttp",
    "product.e2e": "turbohooks, 1 worker",
    "product.e2e2": "turbohooks, 2 workers",
}


@dataclass
class Context:
    """What the report says about the run itself."""

    quick: bool
    started: datetime
    wall: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    command: str
    failures: list[str]


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": str(usable),
        "CPU": model,
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
    }


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    try:
        out = subprocess.run([find_nats_server(), "--version"], capture_output=True, text=True, timeout=10, check=False)
        found["nats-server"] = out.stdout.strip().removeprefix("nats-server: ")
    except (OSError, subprocess.SubprocessError) as exc:
        found["nats-server"] = f"unknown ({exc})"
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# -- formatting ---------------------------------------------------------------------------------


def _number(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:,.1f}"
    else:
        text = f"{value:,.2f}"
    return f"{text} {unit}".strip()


def _ratio(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if value >= 10:
        return f"{value:,.0f}×"
    if value >= 1:
        return f"{value:.2f}×"
    return f"{value:.0%}"


def _threshold(op: str, threshold: float, ref: str | None, results: Results, unit: str) -> str:
    op = {">=": "≥", "<=": "≤"}.get(op, op)
    if ref is None:
        return f"{op} {_number(threshold, unit)}"
    figure = results.figures.get(ref)
    name = figure.label if figure else ref
    shown = f"{threshold:.0%}" if threshold < 1 else f"{threshold:g}×"
    return f"{op} {shown} of {name}"


def _label(results: Results, key: str) -> str:
    figure = results.figures.get(key)
    return figure.label if figure else key


def _targets_table(results: Results) -> list[str]:
    lines = ["| target | measured | needed | result |", "| --- | ---: | --- | --- |"]
    for target in results.targets:
        measured, ok = results.check(target)
        figure = results.figures.get(target.key)
        unit = figure.unit if figure else ""
        if target.ref is not None:
            value, base = _number(results.value(target.key), unit), _number(results.value(target.ref), unit)
            shown = f"{_ratio(measured)} ({value} vs {base})"
        else:
            shown = _number(measured, unit)
            if ok is False and measured is not None and shown == _number(target.threshold, unit):
                shown = f"{measured:,.1f} {unit}".strip()  # do not show a miss as the threshold itself
        verdict = "not measured" if ok is None else ("**pass**" if ok else "**FAIL**")
        if target.scale_note:
            verdict += f" ({target.scale_note})"
        needed = _threshold(target.op, target.threshold, target.ref, results, unit)
        lines.append(f"| {target.label} | {shown} | {needed} | {verdict} |")
    return lines


def _target_cell(results: Results, key: str) -> str:
    """The targets that speak of figure ``key``, each with its verdict."""
    cells = []
    for target in results.targets:
        if target.key != key:
            continue
        figure = results.figures.get(key)
        needed = _threshold(target.op, target.threshold, target.ref, results, figure.unit if figure else "")
        if target.ref is not None:
            needed = needed.split(" of ", 1)[0] + f" of {_short(results, target.ref)}"
        _, ok = results.check(target)
        verdict = "not measured" if ok is None else ("**pass**" if ok else "**FAIL**")
        cells.append(f"{needed}: {verdict}{' (scaled)' if target.scale_note else ''}")
    return "<br>".join(cells)


def _short(results: Results, key: str) -> str:
    return _label(results, key).removesuffix(": deliveries/s at saturation")


def _figures_table(results: Results, group: str, prefix: tuple[str, ...] = ()) -> list[str]:
    lines = [
        "| figure | value | ratio | compared with | target | note |",
        "| --- | ---: | ---: | --- | --- | --- |",
    ]
    for figure in results.figures.values():
        if figure.group != group or (prefix and not figure.key.startswith(prefix)):
            continue
        ratio = results.ratio(figure.key, figure.ref) if figure.ref else None
        versus = _label(results, figure.ref) if figure.ref and figure.ref != figure.key else ""
        shown_ratio = _ratio(ratio) if figure.ref and figure.ref != figure.key else ""
        target = _target_cell(results, figure.key)
        lines.append(
            f"| {figure.label} | {_number(figure.value, figure.unit)} | {shown_ratio} | {versus} | {target} "
            f"| {figure.note} |"
        )
    return lines


def _diagnosis(results: Results) -> list[str]:
    if not any(key.startswith("diag.") for key in results.figures):
        return []
    return [
        "### What the latency is made of",
        "",
        "The same 500 events/s, on a fresh server each: without the recorder process, and with the recorder "
        "under nats-server's default sync (full mode only). Each run also times publish → stored (JetStream's "
        "ack): when its tail is as long as the end-to-end one, the stalls are in the store (the disk's fsyncs), "
        "before any consumer sees the event.",
        "",
        *_figures_table(results, "product", ("diag.",)),
        "",
    ]


def _peers_table(results: Results) -> list[str]:
    rows = [
        ("(a) no broker: background task + httpx", "peer.background_httpx"),
        ("(b) nats-py pull consumer + httpx", "peer.nats_httpx"),
        ("(c) FastStream + httpx", "peer.faststream_httpx"),
        ("(d) nats-py pull consumer + aiohttp", "peer.nats_aiohttp"),
        ("**turbohooks**, 1 worker, signed + recorded", "product.e2e"),
        ("**turbohooks**, 2 workers", "product.e2e2"),
    ]
    lines = [
        "| contender | deliveries/s at saturation | vs (d) | consumer CPU per delivery | p50 at 500/s | p95 | p99 "
        "| p99 publish → stored | saturation run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    latency = results.series.get("latency", {})
    for name, key in rows:
        rate = results.value(f"{key}.rate")
        if rate is None and key not in latency:
            continue
        lat = latency.get(key, {})
        figure = results.figures.get(f"{key}.rate")
        cpu = results.figures.get(f"{key}.cpu_us")
        versus = _ratio(results.ratio(f"{key}.rate", "peer.nats_aiohttp.rate"))
        quantiles = " | ".join(_latency(lat, q) for q in ("p50", "p95", "p99"))
        notes = "; ".join(n for n in (figure.note if figure else "", cpu.note if cpu else "") if n)
        stored = results.value(f"{key}.stored_p99")
        lines.append(
            f"| {name} | {_number(rate)} | {versus} | {_number(cpu.value if cpu else None, 'µs')} | {quantiles} "
            f"| {'' if stored is None else f'{stored:,.2f} ms'} | {notes} |"
        )
    return lines


def _latency(data: dict[str, Any], key: str) -> str:
    if not data:
        return ""
    value = data.get(key)
    return "> drain window (events lost or late)" if value is None else f"{value:,.2f} ms"


# -- plots --------------------------------------------------------------------------------------


def plot(results: Results, out_dir: Path) -> dict[str, Path]:
    """PNG plots beside the report; returns {name: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}

    def save(fig: Any, name: str) -> None:
        path = out_dir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made[name] = path

    http = results.series.get("http")
    if http:
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        for client, points in http.items():
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=client)
        ax.set_xscale("log", base=2)
        ax.set_xticks([p[0] for p in next(iter(http.values()))], labels=[str(p[0]) for p in next(iter(http.values()))])
        ax.set_xlabel("requests in flight")
        ax.set_ylabel("requests/s")
        ax.set_title("Loopback HTTP ceiling against the minimal receiver")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, "http_ceiling")

    rows = [
        ("(a) background+httpx", "peer.background_httpx.rate"),
        ("(b) nats-py+httpx", "peer.nats_httpx.rate"),
        ("(c) FastStream+httpx", "peer.faststream_httpx.rate"),
        ("(d) nats-py+aiohttp", "peer.nats_aiohttp.rate"),
        ("turbohooks, 1 worker", "product.e2e.rate"),
        ("turbohooks, 2 workers", "product.e2e2.rate"),
    ]
    bars = [(name, results.value(key)) for name, key in rows if results.value(key) is not None]
    if bars:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        names = [b[0] for b in bars]
        values = [b[1] or 0.0 for b in bars]
        colors = ["#c44" if n.startswith("turbohooks") else "#888" for n in names]
        ax.barh(names, values, color=colors)
        ax.axvline(4000, color="k", linestyle="--", linewidth=1, label="target 4,000/s")
        reference = results.value("peer.nats_aiohttp.rate")
        if reference:
            ax.axvline(0.85 * reference, color="#36c", linestyle=":", linewidth=1.5, label="85 % of (d)")
        ax.invert_yaxis()
        ax.set_xlabel("deliveries/s at saturation (backlog drained)")
        ax.set_title("End to end: publish → POST received")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        save(fig, "e2e_saturation")

    latency = results.series.get("latency")
    if latency:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        for key, data in latency.items():
            values = sorted(data["latencies"])
            if not values:
                continue
            sent = max(data["sent"], len(values))
            ax.plot(values, [(i + 1) / sent for i in range(len(values))], label=_SHORT.get(key, key))
        ax.axvline(3.0, color="k", linestyle="--", linewidth=1, label="p99 target 3 ms")
        ax.axhline(0.99, color="#999", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("publish → received (ms)")
        ax.set_ylabel("fraction of events")
        ax.set_title("Latency at 500 events/s (measured at the receiver)")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        save(fig, "latency_500")

    backlog = results.series.get("backlog")
    if backlog and backlog["arrivals"]:
        arrivals = backlog["arrivals"]
        start = arrivals[0]
        fig, ax = plt.subplots(figsize=(7, 3.8))
        step = max(1, len(arrivals) // 500)
        ax.plot([a - start for a in arrivals[::step]], list(range(1, len(arrivals) + 1, step)), color="#c44")
        ax.set_xlabel("seconds since the first delivery")
        ax.set_ylabel("events delivered", color="#c44")
        rss = [(t - start, mb) for t, mb in backlog["rss"] if t >= start - 1]
        if rss:
            twin = ax.twinx()
            twin.plot([r[0] for r in rss], [r[1] for r in rss], color="#36c")
            twin.axhline(300, color="#36c", linestyle="--", linewidth=1)
            twin.set_ylabel("worker RSS (MB); target < 300", color="#36c")
            twin.set_ylim(bottom=0)
        ax.set_title(f"Draining a backlog of {backlog['count']:,} events (1 worker)")
        ax.grid(alpha=0.3)
        save(fig, "backlog")

    sync = results.series.get("sync")
    if sync:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        kinds = ("publish", "publish_async", "emit_many")
        width = 0.38
        for offset, (policy, color) in enumerate((("always", "#c44"), ("default", "#888"))):
            if policy not in sync:
                continue
            xs = [i + (offset - 0.5) * width for i in range(len(kinds))]
            ax.bar(xs, [sync[policy][k] for k in kinds], width, label=f"sync_interval: {policy}", color=color)
        ax.set_xticks(range(len(kinds)), labels=["publish (awaited)", "publish_async", "emit_many"])
        ax.set_ylabel("acked publishes/s")
        ax.set_yscale("log")
        ax.set_title("Cost of the disk-sync policy on acked publishes")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        save(fig, "sync_policy")
    return made


# -- the markdown -------------------------------------------------------------------------------


def write_markdown(results: Results, context: Context, plots: dict[str, Path], out: Path) -> None:
    rel = {name: os.path.relpath(path, out.parent) for name, path in plots.items()}
    mode = (
        "QUICK mode (reduced counts: a smoke run; read the ratios, not the absolutes)" if context.quick else "full mode"
    )
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{context.command}` on {context.started:%Y-%m-%d %H:%M} UTC, {mode}, "
        f"in {context.wall:,.0f} s. Do not edit: run it again to refresh this file and the plots in "
        f"`{os.path.relpath(next(iter(plots.values())).parent, out.parent) if plots else 'docs/bench'}/`.",
        "",
        "Every figure here was measured in this one run on this machine, and is quoted as a ratio to a "
        "ceiling or a peer measured in the same run: the machines are shared and noisy, so absolute numbers "
        "drift (±30 % between runs); ratios drift much less. All traffic is on 127.0.0.1; every process runs "
        "on uvloop; events are ~1 KiB envelopes; each group has its own fresh nats-server (`nats/dev.conf`: "
        "`sync_interval: always`) with a temporary store.",
        "",
        "## Machine and versions",
        "",
        "| | |",
        "| --- | --- |",
    ]
    for name, value in {**machine(), **versions()}.items():
        lines.append(f"| {name} | {value} |")
    lines.append(
        f"| load average | {context.load_before[0]:.2f} before the run, {context.load_after[0]:.2f} after "
        "(other work on the machine shows here) |"
    )
    lines.append(f"| date | {context.started:%Y-%m-%d %H:%M:%S} UTC |")
    lines += ["", "## Targets", "", *_targets_table(results), ""]
    if context.failures:
        lines += ["**Groups that failed in this run** (their figures are missing):", ""]
        lines += [f"- {failure}" for failure in context.failures]
        lines.append("")
    lines += [
        "## Ceilings",
        "",
        "No turbohooks code: the disk's fsync rate, nats-py against JetStream (awaited publish; "
        "`publish_async`; a pull consumer fetching and acking), and each HTTP client against the minimal "
        "receiver (`benchmarks/_receiver.py`, its own process, answering 200 at once).",
        "",
        *_figures_table(results, "ceilings"),
        "",
    ]
    if "http_ceiling" in rel:
        lines += [f"![HTTP ceiling]({rel['http_ceiling']})", ""]
    lines += [
        "## Peers and the product, end to end",
        "",
        "Saturation: a backlog is published first, then the consumer starts on it (a peer's process starts; "
        "the product's subscription is resumed), and deliveries/s is timed at the receiver from the first "
        "arrival to the last, so that the publisher's own fsync-bound rate does not cap the consumer. "
        "Latency: events published one by one at a fixed 500/s (`EventPublisher.publish`, awaited each in "
        "its own task), latency = arrival at the receiver − the event's `timestamp`; an event that never "
        "arrived counts as infinitely late; p99 publish → stored is the same events' time to JetStream's ack "
        "(stored and fsynced), which no consumer can beat: the disk's share of the tail. "
        "The peers are in `benchmarks/_peer_apps.py`, each its own "
        "process, written as their documentation shows, with one shared HTTP client, no signing and no "
        'log; (a) has no broker: the process that "serves the request" also POSTs (one shared '
        "`httpx.AsyncClient`, its most favourable form). turbohooks is `turbohooks worker --integration "
        "webhook` plus `turbohooks recorder`, both processes, signing every request (Standard Webhooks + "
        "GitHub-style + CloudEvents headers) and recording every attempt. Consumer CPU per delivery is the CPU "
        "time the consumer process(es) used while deliveries arrived, divided by those deliveries: the figure "
        "that other work on the machine disturbs least; the shares of a core of every process involved follow.",
        "",
        *_peers_table(results),
        "",
    ]
    for name, title in (("e2e_saturation", "End to end at saturation"), ("latency_500", "Latency at 500/s")):
        if name in rel:
            lines += [f"![{title}]({rel[name]})", ""]
    lines += [
        "## The product",
        "",
        "### Publishing",
        "",
        "Raw nats-py and `EventPublisher` alternated on one server (medians of the repeats). Under "
        "`sync_interval: always` every acknowledged publish waits for an fsync, so both are bounded by the "
        "disk; the disk-sync section below shows the same paths under nats-server's default policy, where "
        "the Python cost shows.",
        "",
        *_figures_table(results, "product", ("product.raw", "product.emit")),
        "",
        "### End to end, scale",
        "",
        *_figures_table(
            results,
            "product",
            ("product.e2e", "product.recorder", "product.backlog", "product.create", "product.fan", "product.idle"),
        ),
        "",
    ]
    if "backlog" in rel:
        lines += [f"![Backlog drain]({rel['backlog']})", ""]
    lines += [
        *_diagnosis(results),
        "### Cost of the hot path",
        "",
        "Microbenchmarks (`timeit`, best of the repeats), quoted against the time one delivery takes at "
        "the end-to-end rate measured above.",
        "",
        *_figures_table(results, "product", ("hot.",)),
        "",
        "### Disk-sync policy",
        "",
        "Two nats-servers: `nats/dev.conf` as shipped (`sync_interval: always`: fsync before every ack) and "
        "the same file without that line (nats-server's default: flush every two minutes, which loses "
        "acknowledged writes on a power loss or kernel crash).",
        "",
        *_figures_table(results, "product", ("sync.",)),
        "",
    ]
    if "sync_policy" in rel:
        lines += [f"![Disk-sync policy]({rel['sync_policy']})", ""]
    if results.profile:
        lines += [
            "## Profile of the worker at saturation",
            "",
            "py-spy (`--nonblocking`, 200 Hz) on the `turbohooks worker` process while it drained a backlog; "
            "collapsed stacks in `docs/bench/worker-profile.folded`.",
            "",
            *results.profile,
            "",
        ]
    lines += ["## Not measured, and caveats", ""]
    lines += [f"- {note}" for note in results.notes] or ["- nothing"]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        "make bench            # full run (minutes): this file, docs/bench/*.png, README's figures",
        "make bench QUICK=1    # about a minute, smaller counts",
        ".venv/bin/python -m benchmarks --help",
        "```",
        "",
    ]
    out.write_text("\n".join(lines), encoding="utf-8")


def write_json(results: Results, context: Context, out: Path) -> None:
    """Every figure and target verdict of the run, machine-readable (to compare runs)."""
    targets = []
    for target in results.targets:
        measured, ok = results.check(target)
        targets.append({**asdict(target), "measured": measured, "pass": ok})
    document = {
        "command": context.command,
        "quick": context.quick,
        "date": context.started.isoformat(),
        "wall_seconds": context.wall,
        "machine": machine(),
        "versions": versions(),
        "load_average": {"before": context.load_before, "after": context.load_after},
        "figures": [asdict(figure) for figure in results.figures.values()],
        "targets": targets,
        "notes": results.notes,
        "failures": context.failures,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(document), indent=1, allow_nan=False, default=str) + "\n", encoding="utf-8")


def _finite(value: Any) -> Any:
    """NaN and infinities as null: JSON has neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


# -- the README ---------------------------------------------------------------------------------


def readme_section(results: Results, context: Context) -> str:
    def fig(key: str, unit: str = "") -> str:
        return _number(results.value(key), unit)

    def ratio(key: str, ref: str) -> str:
        return _ratio(results.ratio(key, ref))

    mode = " (quick mode)" if context.quick else ""
    cores = machine()["nproc"]
    idle_label = _label(results, "product.idle.cpu").split(":")[0]
    e2e = "product.e2e.rate"
    return "\n".join(
        [
            "## Performance",
            "",
            f"Measured by `{context.command}` on {context.started:%Y-%m-%d}{mode}, on {cores} shared cores; "
            "every figure, its target, its ceiling and the peers it is compared with are in "
            "[`BENCHMARKS.md`](BENCHMARKS.md) (plots in `docs/bench/`). Absolute numbers drift ±30 % "
            "between runs on shared machines; the ratios are measured in the same run.",
            "",
            f"- End to end, one `turbohooks worker` (signed, recorded): **{fig(e2e, 'deliveries/s')}**, "
            f"{ratio(e2e, 'peer.nats_aiohttp.rate')} of a plain nats-py + aiohttp consumer, "
            f"{ratio(e2e, 'peer.nats_httpx.rate')} a plain nats-py + httpx one and "
            f"{ratio(e2e, 'peer.faststream_httpx.rate')} FastStream + httpx; two workers against one: "
            f"{ratio('product.e2e2.rate', e2e)}.",
            f"- Latency at 500 events/s, publish → received: p99 **{fig('product.e2e.p99', 'ms')}**; "
            f"publish → stored (JetStream's ack, fsynced) alone, in the same run: p99 "
            f"{fig('product.e2e.stored_p99', 'ms')}, which no consumer can beat; "
            f"(d) plain nats-py + aiohttp: p99 {fig('peer.nats_aiohttp.p99', 'ms')}.",
            f"- `emit_many`: {fig('product.emit_many', '/s')}, "
            f"{ratio('product.emit_many', 'product.raw_publish_async')} of raw `publish_async` under "
            f"`sync_interval: always`, {ratio('sync.default.emit_many', 'sync.default.publish_async')} under "
            "nats-server's default sync (where the disk does not bound both).",
            f"- Disk sync: `sync_interval: always` caps acknowledged publishes at "
            f"{fig('sync.always.publish_async', '/s')}, against {fig('sync.default.publish_async', '/s')} with "
            f"the default policy (the disk's fsync rate: {fig('ceil.fsync', '/s')}).",
            f"- Idle: {idle_label} cost the worker {fig('product.idle.cpu', '% of a core')} and "
            f"{fig('product.idle.rss', 'MB')}; a backlog of {_backlog_count(results)} events drains at "
            f"{fig('product.backlog.rate', '/s')} with a peak RSS of {fig('product.backlog.rss', 'MB')}.",
            "",
            "```bash",
            "make bench            # full run: BENCHMARKS.md, docs/bench/*.png, this section",
            "make bench QUICK=1    # about a minute",
            "```",
            "",
        ]
    )


def _backlog_count(results: Results) -> str:
    label = _label(results, "product.backlog.rate")
    match = re.search(r"backlog of ([\d,]+) events", label)
    return match.group(1) if match else "n/a"


def update_readme(readme: Path, section: str) -> None:
    """Replace the README's ``## Performance`` section (up to the next ``## ``), or append it at the end."""
    text = readme.read_text(encoding="utf-8")
    match = re.search(r"(?m)^## Performance\n.*?(?=^## |\Z)", text, flags=re.DOTALL)
    if match:
        text = (
            text[: match.start()]
            + section.rstrip("\n")
            + "\n"
            + ("\n" if match.end() < len(text) else "")
            + text[match.end() :]
        )
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    readme.write_text(text, encoding="utf-8")
