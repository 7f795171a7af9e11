"""What the tests share: one HTTP receiver, one way to wait, one engine runner, one scrubbed CLI environment.

The fixtures (``receiver``, ``engine``, ``running``, ``unique``) are registered
for every test directory by ``tests/conftest.py``; the helpers are imported
from here (``from tests.support import Receiver, wait_for``).
"""

from ._engine import Running, running_engine, sentinel, settled
from ._env import BIN, cli_env, engine_cli_env, run_cli, run_cli_async
from ._receiver import Received, Receiver, serve_receiver
from ._scrape import Samples, assert_one_help_and_type_per_family, samples, value
from ._waiting import wait_for

__all__ = (
    "BIN",
    "Received",
    "Receiver",
    "Running",
    "Samples",
    "assert_one_help_and_type_per_family",
    "cli_env",
    "engine_cli_env",
    "run_cli",
    "run_cli_async",
    "running_engine",
    "samples",
    "sentinel",
    "serve_receiver",
    "settled",
    "value",
    "wait_for",
)
