"""The report's PNG plots (matplotlib, loaded only when plotting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from ._results import Results

__all__ = ("plot",)

_SHORT: Final = {
    "peer.background_httpx": "(a) background task + httpx",
    "peer.nats_httpx": "(b) nats-py + httpx",
    "peer.faststream_httpx": "(c) FastStream + httpx",
    "peer.nats_aiohttp": "(d) nats-py + aiohttp",
    "product.e2e": "turbohooks, 1 worker",
    "product.e2e2": "turbohooks, 2 workers",
}


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
