"""`turbohooks secrets`: the key secrets are encrypted under at rest; `rotate-key` replaces it.

A rotation without downtime, with the key file (the default):

1. a new key is put first in ``<data dir>/secret-key``, the old one kept after it:
   every process re-reads the file before it encrypts (new values go under the
   new key) and when it meets a key id it does not hold, so running processes
   read and write both from now on;
2. after a short settling pause (a write that started under the old key commits),
   every subscription in SQL and every entry of the KV mirror is re-encrypted
   under the new key, one row / one entry at a time (row locked; KV entry
   compare-and-set on its revision, so a concurrent change wins);
3. once a last pass finds nothing left under the old key, the old key is removed
   from the file. Until then it stays there, for reading.

With ``TURBOHOOKS_SECRET_KEY`` (processes on several machines), the keys are
the operator's: set ``TURBOHOOKS_SECRET_KEY=NEW,OLD`` in every process (both
decrypt, the first encrypts), restart them one by one, run ``rotate-key`` (it
re-encrypts everything under NEW), then drop OLD from the variable.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Final

import typer

from streams import Settings

from ._common import console, fail, load_settings, run

if TYPE_CHECKING:
    from consumers import Engine

__all__ = ("register", "secrets_app")

secrets_app = typer.Typer(help="The key secrets are encrypted under at rest.", no_args_is_help=True)

_PASSES: Final = 5


async def _status(settings: Settings) -> None:
    from consumers import open_engine

    async with open_engine(settings, name="secrets") as engine:
        keyring = engine.subscriptions.keyring
        source = str(keyring.path) if keyring.path is not None else "TURBOHOOKS_SECRET_KEY"
        console.print(f"keys ({source}): {', '.join(keyring.ids)}; new values are encrypted under {keyring.ids[0]}")
        sql, kv = await engine.subscriptions.stale_count(), await engine.registry.stale_count()
        console.print(f"subscriptions not under the current key: {sql} in SQL, {kv} in the KV mirror")


async def _reseal_everything(engine: Engine) -> tuple[int, int]:
    sql = kv = 0
    for _ in range(_PASSES):
        sql += await engine.subscriptions.reseal()
        kv += await engine.registry.reseal()
        if await engine.subscriptions.stale_count() == 0 and await engine.registry.stale_count() == 0:
            return sql, kv
    fail("some secrets are still under an older key (concurrent writes?); run rotate-key again")


async def _rotate(settings: Settings, settle: float) -> None:
    from consumers import open_engine
    from consumers.secrets import new_key

    async with open_engine(settings, name="secrets") as engine:
        keyring = engine.subscriptions.keyring
        if keyring.path is None:
            if len(keyring.ids) < 2:
                fail(
                    "TURBOHOOKS_SECRET_KEY holds the keys: set it to NEW,OLD (a new key first, the current one "
                    "after a comma) in every process, restart them, then run rotate-key; then drop OLD",
                    2,
                )
            sql, kv = await _reseal_everything(engine)
            console.print(
                f"re-encrypted under key {keyring.ids[0]}: {sql} subscriptions in SQL, {kv} in the KV mirror; "
                f"remove key(s) {', '.join(keyring.ids[1:])} from TURBOHOOKS_SECRET_KEY now",
                highlight=False,
            )
            return
        old = keyring.ids
        keyring.add_current(new_key())
        console.print(f"new key {keyring.ids[0]} in {keyring.path}; kept for reading: {', '.join(old)}")
        await asyncio.sleep(settle)
        sql, kv = await _reseal_everything(engine)
        dropped = keyring.retire_others()
        console.print(
            f"re-encrypted under key {keyring.ids[0]}: {sql} subscriptions in SQL, {kv} in the KV mirror; "
            f"retired key(s) {', '.join(dropped)}",
            highlight=False,
        )


@secrets_app.command("status")
def status() -> None:
    """The keys in use and how many subscriptions are not yet under the current one."""
    settings = load_settings()
    run(lambda: _status(settings))


@secrets_app.command("rotate-key")
def rotate_key(
    settle: Annotated[
        float,
        typer.Option(
            "--settle", min=0.0, help="Seconds for writes begun under the old key to finish before re-encrypting."
        ),
    ] = 2.0,
) -> None:
    """Re-encrypt every secret (SQL and the KV mirror) under a new key, without stopping anything."""
    settings = load_settings()
    run(lambda: _rotate(settings, settle))


def register(app: typer.Typer) -> None:
    """Add `turbohooks secrets` to ``app``."""
    app.add_typer(secrets_app, name="secrets")
