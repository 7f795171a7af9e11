"""py-spy on a running worker: collapsed stacks to a file, the hot spots as text.

``record`` samples a process for some seconds (``py-spy record --format raw``)
and keeps the collapsed stacks (``worker-profile.folded``: load it in
speedscope, or feed it to flamegraph.pl or inferno for a flame graph); the
report shows the text summary. Sampling is ``--nonblocking`` so that the worker
is not paused (slightly less exact stacks, a much smaller cost to what is
measured).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Final

__all__ = ("record", "summarize")

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_TOP: Final = 25


def _py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def _where(path: str) -> str:
    """A short place for a frame's file: ``aiohttp/client.py``, ``consumers/_worker.py``."""
    marker = "site-packages/"
    if marker in path:
        return path.split(marker, 1)[1]
    for root in ("consumers/", "publishers/", "streams/", "integrations/", "gateway/"):
        if f"/{root}" in path:
            return root + path.split(f"/{root}", 1)[1]
    if "/lib/python3" in path:
        return "stdlib/" + path.rsplit("/lib/python3", 1)[1].split("/", 1)[-1]
    return path


def _package(where: str) -> str:
    head = where.split("/", 1)[0]
    if head == "stdlib":
        parts = where.split("/")
        return f"stdlib {parts[1].removesuffix('.py')}" if len(parts) > 1 else "stdlib"
    return head.removesuffix(".py")


def summarize(folded: str) -> list[str]:
    """Markdown lines: the top functions by own samples and by inclusive samples, and a split by package."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for raw in stack.split(";"):
            match = _FRAME.match(raw)
            if match is None or raw.startswith(("process ", "thread ")):
                continue
            frames.append(f"{match['func']} ({_where(match['file'])})")
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        packages[_package(frames[-1].rsplit("(", 1)[1].rstrip(")"))] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return ["py-spy collected no samples."]
    lines = [f"{total:,} samples of the process's threads while they were busy (idle time is not sampled).", ""]
    lines += [
        "Own time (the function itself was on top of the stack). `Runner.run`'s own time is uvloop's event "
        "loop (native code: polling, callbacks, socket reads), which py-spy attributes to its Python caller.",
        "",
    ]
    lines += ["| % | function |", "| ---: | --- |"]
    lines += [f"| {100 * n / total:.1f} | `{name}` |" for name, n in own.most_common(_TOP)]
    lines += ["", "Own time by package:", "", "| % | package |", "| ---: | --- |"]
    lines += [f"| {100 * n / total:.1f} | {name} |" for name, n in packages.most_common(15)]
    lines += ["", "Inclusive time (on the stack), turbohooks and the libraries it calls:", ""]
    lines += ["| % | function |", "| ---: | --- |"]
    # Frames on (nearly) every stack are the process's entry points (typer, asyncio.run): left out.
    wanted = [(name, n) for name, n in inclusive.most_common() if n < 0.85 * total]
    lines += [f"| {100 * n / total:.1f} | `{name}` |" for name, n in wanted[:_TOP]]
    return lines


async def record(pid: int, seconds: float, out_dir: Path, name: str = "worker-profile") -> list[str]:
    """Sample ``pid`` for ``seconds``; write the collapsed stacks (``<name>.folded``); return the summary."""
    tool = _py_spy()
    if tool is None:
        return ["py-spy is not installed (`pip install py-spy`, part of the `bench` extra); no profile."]
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    folded = out_dir / f"{name}.folded"
    process = await asyncio.create_subprocess_exec(
        tool,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "200",
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(folded),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), seconds + 30)
    except TimeoutError:
        return ["py-spy did not finish in time; no profile."]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0 or not folded.exists():
        return [f"py-spy failed ({process.returncode}): {err.decode(errors='replace').strip()[-300:]}"]
    return summarize(folded.read_text(encoding="utf-8"))
