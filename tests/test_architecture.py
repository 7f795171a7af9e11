"""The architecture gate: imports go one way and a worker stays light.

Both checks run in a fresh interpreter, so nothing the test session imported
(the gateway, SQLAlchemy, the test receiver) can hide or fake a result. The
import contracts themselves are in pyproject.toml ([tool.importlinter]);
``make lint`` runs them too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

pytestmark = pytest.mark.architecture

ROOT: Final = Path(__file__).resolve().parent.parent

# What ``turbohooks worker --integration webhook`` imports: the engine, the
# integrations registry and the Worker the CLI builds.
WORKER_ENTRY: Final = "import consumers.engine\nimport integrations\nfrom consumers import Worker\n"
# The libraries of the control plane and of the receiving servers, never of a worker; and OpenTelemetry,
# loaded only when TURBOHOOKS_TRACING is on (streams/telemetry).
HEAVY: Final = ("sqlalchemy", "litestar", "aiohttp.web", "httpx", "opentelemetry")


def _fresh(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_worker_imports_no_sql_litestar_aiohttp_web_or_httpx() -> None:
    # A heavy library counts as loaded if it or any of its submodules is (aiohttp's server
    # side also lives in aiohttp.web_*, which aiohttp.web gathers).
    report = (
        "import json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "names = [m.replace('aiohttp.web_', 'aiohttp.web.') for m in sys.modules]\n"
        "print(json.dumps([h for h in heavy if any(n == h or n.startswith(h + '.') for n in names)]))\n"
    )
    done = _fresh(WORKER_ENTRY + report)
    assert done.returncode == 0, f"the worker's entry point does not import:\n{done.stderr}"
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"a worker process loads {', '.join(loaded)}"


def test_architecture_gate_import_contracts_are_kept() -> None:
    """`lint-imports` on pyproject.toml's contracts: layers, nothing imports gateway, a light worker."""
    done = _fresh(
        "import sys\nfrom importlinter.cli import lint_imports\nsys.exit(lint_imports(no_cache=True, no_logo=True))\n"
    )
    assert done.returncode == 0, f"import contracts broken or invalid:\n{done.stdout}\n{done.stderr}"
