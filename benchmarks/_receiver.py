"""The minimal receiver: an HTTP/1.1 server on uvloop, run as its own process.

``python -m benchmarks._receiver`` listens on 127.0.0.1 (a free port unless
``--port`` is given; ``--ports N``: N free ports, one log), prints
``READY <port> [<port> ...]`` and serves until SIGTERM or until
``--max-seconds`` passed. Every ``POST`` is answered ``200`` with an empty body
at once, so that the receiver is never what a benchmark measures.

Several ports stand for several receiving hosts: an HTTP client's per-host
connection limit is per (host, port), so one port alone would make the
client's pool, not the product, what a many-subscription load measures.

Per-path behaviour (the real-world load): a ``POST`` to ``/p/<n>`` is answered
as the current *profile* says for path ``n``, a deterministic function of the
profile's seed and ``n``: a share of the paths time out (held ``hang``
seconds, then answered if the client still waits), a share answer ``500``
after their delay, the rest ``200`` after their delay, uniform in
``mean ± jitter`` ms. The default profile answers every path at once.

Per request it keeps the arrival time (``time.monotonic()``: CLOCK_MONOTONIC,
the same clock in every process of the machine), the latency from the event's
``timestamp`` to the arrival (wall clock), and a delivery key (``webhook-id``
when signed, else the event id) to count distinct deliveries.

Control paths, for the benchmark driver:

* ``GET /_bench/stats``: ``{"count", "unique", "signed", "first", "last"}``;
* ``GET /_bench/samples?from=N``: arrivals and latencies from index ``N``;
* ``POST /_bench/reset``: forget everything;
* ``POST /_bench/profile?mean=100&jitter=50&timeout=0.1&error=0.05&hang=30&seed=1``:
  the per-path behaviour from now on (absent parameters: 0; ``seed`` 1).

Stats also carry ``kinds``: distinct deliveries per kind of path (answered,
500, timing out); samples carry each request's ``path`` (``-1``: not a
``/p/<n>`` path) and ``kind``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import random
import signal
import sys
import time
from array import array
from datetime import datetime
from typing import Final

__all__ = ("ERROR", "HANG", "OK", "Profile", "main", "path_behaviour")

_OK: Final = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_BAD: Final = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_CONTENT_LENGTH: Final = b"\r\ncontent-length:"
_WEBHOOK_ID: Final = b"\r\nwebhook-id:"
_SIGNATURE: Final = b"\r\nwebhook-signature:"
_TIMESTAMP: Final = b'"timestamp":"'
_EVENT_ID: Final = b'"event_id":"'
_ERROR: Final = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
_MAX_HEAD: Final = 64 * 1024
_PATH: Final = b"/p/"
OK, ERROR, HANG = 0, 1, 2
"""Kinds of path: answered 200, answered 500, timing out."""


class Profile:
    """How each ``/p/<n>`` path answers: its kind and its delay (seconds), fixed per path by the seed."""

    def __init__(
        self,
        *,
        mean: float = 0.0,
        jitter: float = 0.0,
        timeout: float = 0.0,
        error: float = 0.0,
        hang: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.mean, self.jitter, self.timeout, self.error, self.hang, self.seed = (
            mean,
            jitter,
            timeout,
            error,
            hang,
            seed,
        )
        self._paths: dict[int, tuple[int, float]] = {}

    def of(self, n: int) -> tuple[int, float]:
        """(kind, delay in seconds) of path ``n``."""
        found = self._paths.get(n)
        if found is None:
            found = path_behaviour(n, self.mean, self.jitter, self.timeout, self.error, self.hang, self.seed)
            self._paths[n] = found
        return found


def path_behaviour(
    n: int, mean: float, jitter: float, timeout: float, error: float, hang: float, seed: int
) -> tuple[int, float]:
    """(kind, delay in seconds) of path ``n`` under a profile: the driver computes the same to classify paths."""
    rng = random.Random(f"{seed}:{n}")
    share = rng.random()
    delay = max(0.0, rng.uniform(mean - jitter, mean + jitter)) / 1000.0
    if share < timeout:
        return HANG, hang
    if share < timeout + error:
        return ERROR, delay
    return OK, delay


class _Log:
    """What arrived, since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.arrivals = array("d")
        self.latencies = array("d")
        self.paths = array("l")
        self.kinds = array("b")
        self.keys: set[bytes] = set()
        self.kind_keys: tuple[set[bytes], set[bytes], set[bytes]] = (set(), set(), set())
        self.signed = 0

    def record(self, head_lower: bytes, body: bytes, path: int = -1, kind: int = OK) -> None:
        now = time.monotonic()
        wall = time.time()
        self.arrivals.append(now)
        latency = math.nan
        start = body.find(_TIMESTAMP)
        if start >= 0:
            start += len(_TIMESTAMP)
            end = body.find(b'"', start)
            with contextlib.suppress(ValueError):
                latency = (wall - datetime.fromisoformat(body[start:end].decode()).timestamp()) * 1000.0
        self.latencies.append(latency)
        key = _header(head_lower, _WEBHOOK_ID)
        if key is None:
            start = body.find(_EVENT_ID)
            key = body[start + len(_EVENT_ID) : start + len(_EVENT_ID) + 36] if start >= 0 else b""
        else:
            self.signed += _SIGNATURE in head_lower
        self.keys.add(key)
        self.paths.append(path)
        self.kinds.append(kind)
        if path >= 0:
            self.kind_keys[kind].add(key)

    def stats(self) -> dict[str, float | int]:
        return {
            "count": len(self.arrivals),
            "unique": len(self.keys),
            "signed": self.signed,
            "first": self.arrivals[0] if self.arrivals else 0.0,
            "last": self.arrivals[-1] if self.arrivals else 0.0,
            "kinds": [len(keys) for keys in self.kind_keys],
        }

    def samples(self, start: int) -> dict[str, list[float | None]]:
        return {
            "arrivals": list(self.arrivals[start:]),
            "latency_ms": [None if math.isnan(v) else v for v in self.latencies[start:]],
            "path": list(self.paths[start:]),
            "kind": list(self.kinds[start:]),
        }


def _header(head_lower: bytes, name: bytes) -> bytes | None:
    start = head_lower.find(name)
    if start < 0:
        return None
    start += len(name)
    end = head_lower.find(b"\r\n", start)
    return head_lower[start : end if end >= 0 else len(head_lower)].strip()


class _State:
    """What every connection of every port shares: the log and the current per-path profile."""

    def __init__(self) -> None:
        self.log = _Log()
        self.profile = Profile()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; requests may be pipelined, and delayed answers keep their order."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.log = state.log
        self.buffer = b""
        self.transport: asyncio.WriteTransport | None = None
        self.queued: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not an asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.queued.clear()  # a client that gave up (its timeout) gets no late answer
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        buffer = self.buffer + data if self.buffer else data
        replies: list[bytes] = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    transport.write(_BAD)
                    transport.close()
                    return
                break
            head_lower = buffer[:end].lower()
            length_text = _header(head_lower, _CONTENT_LENGTH)
            if b"\r\ntransfer-encoding:" in head_lower:
                transport.write(_BAD)  # chunked bodies: no client of the benchmarks sends them
                transport.close()
                return
            length = int(length_text) if length_text else 0
            if len(buffer) < end + 4 + length:
                break
            body = buffer[end + 4 : end + 4 + length]
            buffer = buffer[end + 4 + length :]
            reply, delay = self.handle(head_lower, body)
            if delay > 0 or self.queued:
                self._queue(b"".join(replies), 0.0)
                replies = []
                self._queue(reply, delay)
            else:
                replies.append(reply)
        self.buffer = buffer
        if replies:
            transport.write(b"".join(replies))

    def _queue(self, reply: bytes, delay: float) -> None:
        """Answer ``reply`` after ``delay``, never before the answers queued ahead of it (HTTP/1.1 order)."""
        if not reply:
            return
        now = time.monotonic()
        when = max(now + delay, self.queued[-1][0] if self.queued else now)
        self.queued.append((when, reply))
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_at(self.queued[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        now = time.monotonic()
        ready: list[bytes] = []
        while self.queued and self.queued[0][0] <= now:
            ready.append(self.queued.popleft()[1])
        if ready and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(ready))
        if self.queued:
            self.timer = asyncio.get_running_loop().call_at(self.queued[0][0], self._flush)

    def handle(self, head_lower: bytes, body: bytes) -> tuple[bytes, float]:
        """The answer to one request, and how long to hold it (seconds)."""
        line_end = head_lower.find(b"\r\n")
        method, _, rest = head_lower[: line_end if line_end >= 0 else len(head_lower)].partition(b" ")
        target = rest.partition(b" ")[0]
        if target.startswith(_PATH):
            try:
                n = int(target[len(_PATH) :].partition(b"?")[0])
            except ValueError:
                return _BAD, 0.0
            kind, delay = self.state.profile.of(n)
            self.log.record(head_lower, body, n, kind)
            return (_ERROR if kind == ERROR else _OK), delay
        if not target.startswith(b"/_bench/"):
            self.log.record(head_lower, body)
            return _OK, 0.0
        path, _, query = target.partition(b"?")
        if path == b"/_bench/reset" and method == b"post":
            self.log.reset()
            return _OK, 0.0
        if path == b"/_bench/profile" and method == b"post":
            params = dict(pair.partition(b"=")[::2] for pair in query.split(b"&") if pair)
            try:
                self.state.profile = Profile(
                    **{k: float(params.get(k.encode(), b"0")) for k in ("mean", "jitter", "timeout", "error", "hang")},
                    seed=int(params.get(b"seed", b"1")),
                )
            except ValueError:
                return _BAD, 0.0
            return _OK, 0.0
        if path == b"/_bench/stats":
            return _json(self.log.stats()), 0.0
        if path == b"/_bench/samples":
            start = int(query.partition(b"from=")[2] or b"0")
            return _json(self.log.samples(start)), 0.0
        return _BAD, 0.0


def _json(value: object) -> bytes:
    payload = json.dumps(value).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


async def serve(port: int, max_seconds: float, ports: int = 1) -> None:
    """Serve until SIGTERM/SIGINT or ``max_seconds``; ``ports`` > 1: that many free ports, one log."""
    loop = asyncio.get_running_loop()
    state = _State()
    servers = [
        await loop.create_server(lambda: _Connection(state), "127.0.0.1", port if ports == 1 else 0, backlog=1024)
        for _ in range(ports)
    ]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = " ".join(str(server.sockets[0].getsockname()[1]) for server in servers)
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except TimeoutError:
        pass
    finally:
        for server in servers:
            server.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._receiver", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ports", type=int, default=1, help="listen on this many free ports (one log)")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop by itself after this long")
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port, args.max_seconds, max(1, args.ports)))


if __name__ == "__main__":
    main()
