"""The minimal receiver: an HTTP/1.1 server on uvloop, run as its own process.

``python -m benchmarks._receiver`` listens on 127.0.0.1 (a free port unless
``--port`` is given), prints ``READY <port>`` and serves until SIGTERM or until
``--max-seconds`` passed. Every ``POST`` is answered ``200`` with an empty body
at once, so that the receiver is never what a benchmark measures.

Per request it keeps the arrival time (``time.monotonic()``: CLOCK_MONOTONIC,
the same clock in every process of the machine), the latency from the event's
``timestamp`` to the arrival (wall clock), and a delivery key (``webhook-id``
when signed, else the event id) to count distinct deliveries.

Control paths, for the benchmark driver:

* ``GET /_bench/stats``: ``{"count", "unique", "signed", "first", "last"}``;
* ``GET /_bench/samples?from=N``: arrivals and latencies from index ``N``;
* ``POST /_bench/reset``: forget everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from array import array
from datetime import datetime
from typing import Final

__all__ = ("main",)

_OK: Final = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_BAD: Final = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_CONTENT_LENGTH: Final = b"\r\ncontent-length:"
_WEBHOOK_ID: Final = b"\r\nwebhook-id:"
_SIGNATURE: Final = b"\r\nwebhook-signature:"
_TIMESTAMP: Final = b'"timestamp":"'
_EVENT_ID: Final = b'"event_id":"'
_MAX_HEAD: Final = 64 * 1024


class _Log:
    """What arrived, since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.arrivals = array("d")
        self.latencies = array("d")
        self.keys: set[bytes] = set()
        self.signed = 0

    def record(self, head_lower: bytes, body: bytes) -> None:
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

    def stats(self) -> dict[str, float | int]:
        return {
            "count": len(self.arrivals),
            "unique": len(self.keys),
            "signed": self.signed,
            "first": self.arrivals[0] if self.arrivals else 0.0,
            "last": self.arrivals[-1] if self.arrivals else 0.0,
        }

    def samples(self, start: int) -> dict[str, list[float | None]]:
        return {
            "arrivals": list(self.arrivals[start:]),
            "latency_ms": [None if math.isnan(v) else v for v in self.latencies[start:]],
        }


def _header(head_lower: bytes, name: bytes) -> bytes | None:
    start = head_lower.find(name)
    if start < 0:
        return None
    start += len(name)
    end = head_lower.find(b"\r\n", start)
    return head_lower[start : end if end >= 0 else len(head_lower)].strip()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; requests may be pipelined."""

    def __init__(self, log: _Log) -> None:
        self.log = log
        self.buffer = b""
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not an asyncio.Transport

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
            replies.append(self.handle(head_lower, body))
        self.buffer = buffer
        if replies:
            transport.write(b"".join(replies))

    def handle(self, head_lower: bytes, body: bytes) -> bytes:
        line_end = head_lower.find(b"\r\n")
        method, _, rest = head_lower[: line_end if line_end >= 0 else len(head_lower)].partition(b" ")
        target = rest.partition(b" ")[0]
        if not target.startswith(b"/_bench/"):
            self.log.record(head_lower, body)
            return _OK
        path, _, query = target.partition(b"?")
        if path == b"/_bench/reset" and method == b"post":
            self.log.reset()
            return _OK
        if path == b"/_bench/stats":
            return _json(self.log.stats())
        if path == b"/_bench/samples":
            start = int(query.partition(b"from=")[2] or b"0")
            return _json(self.log.samples(start))
        return _BAD


def _json(value: object) -> bytes:
    payload = json.dumps(value).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


async def serve(port: int, max_seconds: float) -> None:
    """Serve until SIGTERM/SIGINT or ``max_seconds``."""
    loop = asyncio.get_running_loop()
    log = _Log()
    server = await loop.create_server(lambda: _Connection(log), "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except TimeoutError:
        pass
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._receiver", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop by itself after this long")
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port, args.max_seconds))


if __name__ == "__main__":
    main()
