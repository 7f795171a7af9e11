"""The report's numbers and tables: figures, ratios, targets and the peers, as markdown."""

from __future__ import annotations

import math
from typing import Any

from ._results import Results

__all__ = (
    "diagnosis_section",
    "figure_label",
    "figures_table",
    "format_number",
    "format_ratio",
    "peers_table",
    "targets_table",
)


def format_number(value: float | None, unit: str = "") -> str:
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


def format_ratio(value: float | None) -> str:
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
        return f"{op} {format_number(threshold, unit)}"
    figure = results.figures.get(ref)
    name = figure.label if figure else ref
    shown = f"{threshold:.0%}" if threshold < 1 else f"{threshold:g}×"
    return f"{op} {shown} of {name}"


def figure_label(results: Results, key: str) -> str:
    figure = results.figures.get(key)
    return figure.label if figure else key


def targets_table(results: Results) -> list[str]:
    lines = ["| target | measured | needed | result |", "| --- | ---: | --- | --- |"]
    for target in results.targets:
        measured, ok = results.check(target)
        figure = results.figures.get(target.key)
        unit = figure.unit if figure else ""
        if target.ref is not None:
            value, base = format_number(results.value(target.key), unit), format_number(results.value(target.ref), unit)
            shown = f"{format_ratio(measured)} ({value} vs {base})"
        else:
            shown = format_number(measured, unit)
            if ok is False and measured is not None and shown == format_number(target.threshold, unit):
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
    return figure_label(results, key).removesuffix(": deliveries/s at saturation")


def figures_table(results: Results, group: str, prefix: tuple[str, ...] = ()) -> list[str]:
    lines = [
        "| figure | value | ratio | compared with | target | note |",
        "| --- | ---: | ---: | --- | --- | --- |",
    ]
    for figure in results.figures.values():
        if figure.group != group or (prefix and not figure.key.startswith(prefix)):
            continue
        ratio = results.ratio(figure.key, figure.ref) if figure.ref else None
        versus = figure_label(results, figure.ref) if figure.ref and figure.ref != figure.key else ""
        shown_ratio = format_ratio(ratio) if figure.ref and figure.ref != figure.key else ""
        target = _target_cell(results, figure.key)
        lines.append(
            f"| {figure.label} | {format_number(figure.value, figure.unit)} | {shown_ratio} | {versus} | {target} "
            f"| {figure.note} |"
        )
    return lines


def diagnosis_section(results: Results) -> list[str]:
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
        *figures_table(results, "product", ("diag.",)),
        "",
    ]


def peers_table(results: Results) -> list[str]:
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
        versus = format_ratio(results.ratio(f"{key}.rate", "peer.nats_aiohttp.rate"))
        quantiles = " | ".join(_latency(lat, q) for q in ("p50", "p95", "p99"))
        notes = "; ".join(n for n in (figure.note if figure else "", cpu.note if cpu else "") if n)
        stored = results.value(f"{key}.stored_p99")
        cpu_us = format_number(cpu.value if cpu else None, "µs")
        lines.append(
            f"| {name} | {format_number(rate)} | {versus} | {cpu_us} | {quantiles} "
            f"| {'' if stored is None else f'{stored:,.2f} ms'} | {notes} |"
        )
    return lines


def _latency(data: dict[str, Any], key: str) -> str:
    if not data:
        return ""
    value = data.get(key)
    return "> drain window (events lost or late)" if value is None else f"{value:,.2f} ms"
