"""The receiving side of the Claude integration: ``turbohooks claude-server``.

A small aiohttp server (the design's ``scripts/claude_webhook_server.py``):

* ``POST /webhook/comment`` (also ``/webhook`` and ``/``) verifies the
  Standard Webhooks signature (401 otherwise), skips events whose actor is an
  AI, drops a redelivered ``webhook-id``, and queues a *run*: the configured
  command line (``claude -p`` by default) with a prompt built from the event,
  its ``prompt_context`` and, when ``CLAUDE_ISSUE_CONTEXT_URL`` is set, the
  issue fetched from Turbo, on its standard input. It answers 202 at once: a
  run takes minutes, a webhook attempt seconds.
* One run per issue at a time: later events for the same issue wait in its
  queue, in arrival order; runs for different issues go side by side, up to
  ``CLAUDE_MAX_CONCURRENT``.
* A run that outlives ``CLAUDE_TIMEOUT`` is killed (SIGTERM to its process
  group, SIGKILL after a grace period).
* Every state change of a run is appended to ``<data dir>/claude-runs.jsonl``
  and kept in memory; ``GET /runs`` and ``GET /runs/{run_id}`` show them. Runs
  a restart interrupted are marked ``interrupted``, not re-run (the agent may
  have acted already).

The command gets ``TURBO_EVENT_ID``, ``TURBO_EVENT_TYPE``, ``TURBO_ISSUE_ID``,
``TURBO_CAUSATION_ID`` and ``TURBO_ACTOR_TYPE=ai`` in its environment, so
whatever it posts back to Turbo can carry the causation chain and the ``ai``
actor. With ``CLAUDE_PUBLISH_REPLIES=true`` the server itself publishes the
run's output as the reply comment (:func:`~integrations.reply_event`).
"""

from __future__ import annotations

from ._config import ClaudeServerConfig
from ._history import ClaudeRun, RunStatus
from ._metrics import ClaudeServerMetrics
from ._prompt import build_prompt
from ._routes import ClaudeServer

__all__ = ("ClaudeRun", "ClaudeServer", "ClaudeServerConfig", "ClaudeServerMetrics", "RunStatus", "build_prompt")
