"""The peers: what a user would write instead of turbohooks, each run as its own process.

Written the way the libraries' documentation shows, with one shared HTTP client
and no signing, no delivery log, no retry schedule: each is the floor of what
its approach costs. All run on uvloop, as the product does.

``python -m benchmarks._peer_apps KIND --target URL [--nats URL --durable NAME]``

* ``nats-httpx``: a nats-py pull consumer; each message is POSTed with httpx, then acked;
* ``nats-aiohttp``: the same code with aiohttp's ``ClientSession``;
* ``faststream``: FastStream's NATS JetStream pull subscriber, POSTing with httpx;
* ``background``: the design's current approach, no broker at all: the
  "request handler" builds the event and starts a background task that POSTs it
  with httpx. It reads commands on stdin: ``burst N`` (N requests as fast as
  they come) and ``rate R N`` (N requests at R per second); it answers
  ``DONE <ok> <failed>`` once every background task has finished.

Every peer stops on SIGTERM, on stdin's end, or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp
import httpx
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig

import nats
from streams import encode_event

from ._traffic import sample_event

__all__ = ("main",)

SUBJECT: Final = "turbo.issue.>"
STREAM: Final = "TURBO_EVENTS"
BATCH: Final = 64
JSON: Final = {"Content-Type": "application/json"}


async def _until_stopped(max_seconds: float) -> None:
    """Until SIGTERM/SIGINT, the end of stdin, or ``max_seconds``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def stdin_closed() -> None:
        while await reader.readline():
            pass
        stop.set()

    watcher = asyncio.create_task(stdin_closed())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    watcher.cancel()


# -- (b) and (d): a plain nats-py pull consumer --------------------------------------------------


async def plain_nats(client: str, nats_url: str, target: str, durable: str, max_seconds: float) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    psub = await js.pull_subscribe(
        SUBJECT,
        durable=durable,
        stream=STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
    )
    post: Callable[[bytes], Awaitable[int]]
    async with contextlib.AsyncExitStack() as stack:
        if client == "httpx":
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))

            async def post_httpx(body: bytes) -> int:
                response = await http.post(target, content=body, headers=JSON)
                return response.status_code

            post = post_httpx
        else:
            session = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)))

            async def post_aiohttp(body: bytes) -> int:
                async with session.post(target, data=body, headers=JSON) as response:
                    await response.read()
                    return response.status

            post = post_aiohttp

        async def handle(msg: Msg) -> None:
            try:
                status = await post(msg.data)
            except (httpx.HTTPError, aiohttp.ClientError, OSError):
                await msg.nak()
                return
            if 200 <= status < 300:
                await msg.ack()
            else:
                await msg.nak()

        async def consume() -> None:
            while True:
                try:
                    msgs = await psub.fetch(BATCH, timeout=1.0)
                except (NatsTimeoutError, TimeoutError, ConnectionClosedError):
                    continue
                await asyncio.gather(*(handle(msg) for msg in msgs))

        consumer = asyncio.create_task(consume())
        await _until_stopped(max_seconds)
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    await nc.close()


# -- (c): FastStream -------------------------------------------------------------------------------


async def faststream_app(nats_url: str, target: str, durable: str, max_seconds: float) -> None:
    from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub

    broker = NatsBroker(nats_url, logger=None)
    http = httpx.AsyncClient(timeout=30)

    @broker.subscriber(
        SUBJECT,
        stream=JStream(STREAM, declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=BATCH, timeout=1.0),
    )
    async def handle(msg: NatsMessage) -> None:
        response = await http.post(target, content=msg.body, headers=JSON)
        response.raise_for_status()  # FastStream naks when the handler raises, acks when it returns

    async with broker:
        await broker.start()
        await _until_stopped(max_seconds)
    await http.aclose()


# -- (a): the design's current approach, a background task per request ---------------------------


async def background_app(target: str, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    client = httpx.AsyncClient(timeout=30)
    tasks: set[asyncio.Task[None]] = set()
    counts = {"ok": 0, "failed": 0}

    async def send_webhook(body: bytes) -> None:
        try:
            response = await client.post(target, content=body, headers=JSON)
            counts["ok" if response.is_success else "failed"] += 1
        except httpx.HTTPError:
            counts["failed"] += 1

    def handle_request(n: int) -> None:
        # What the API's endpoint does after its own work: build the event,
        # hand the POST to a background task, answer the client.
        task = asyncio.create_task(send_webhook(encode_event(sample_event("issue.updated", n))))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    sys.stdout.write("READY\n")
    sys.stdout.flush()
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        try:
            line = await asyncio.wait_for(reader.readline(), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        if not line:
            break
        command = line.decode().split()
        counts.update(ok=0, failed=0)
        if command[0] == "burst":
            for n in range(int(command[1])):
                handle_request(n)
                await asyncio.sleep(0)  # the next request is another task's turn
        elif command[0] == "rate":
            rate, count = float(command[1]), int(command[2])
            started = time.monotonic()
            for n in range(count):
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                handle_request(n)
        if tasks:
            await asyncio.wait(set(tasks), timeout=max(0.1, deadline - time.monotonic()))
        sys.stdout.write(f"DONE {counts['ok']} {counts['failed']}\n")
        sys.stdout.flush()
    for task in tasks:
        task.cancel()
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._peer_apps", description=__doc__)
    parser.add_argument("kind", choices=["nats-httpx", "nats-aiohttp", "faststream", "background"])
    parser.add_argument("--target", required=True)
    parser.add_argument("--nats", default="")
    parser.add_argument("--durable", default="peer")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    import uvloop

    if args.kind == "background":
        uvloop.run(background_app(args.target, args.max_seconds))
    elif args.kind == "faststream":
        uvloop.run(faststream_app(args.nats, args.target, args.durable, args.max_seconds))
    else:
        uvloop.run(plain_nats(args.kind.removeprefix("nats-"), args.nats, args.target, args.durable, args.max_seconds))


if __name__ == "__main__":
    main()
