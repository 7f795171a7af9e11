"""TLS for NATS against a real nats-server: generated certificates, the server verified, client certs required."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from streams import EmbeddedNats, NatsUnavailableError, Settings, connect_nats, embedded_config, provision
from streams._auth import load_credentials, user_name
from streams._tls import ensure_certificates, tls_files

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TlsServer:
    server: EmbeddedNats
    settings: Settings

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.server.port}"

    def external(self, **more: object) -> Settings:
        """Settings of a client that is given the URL and credentials, as against an external server."""
        passwords = load_credentials(self.settings)
        assert passwords is not None
        return msgspec.structs.replace(
            Settings(), nats_url=self.url, nats_user=user_name("worker"), nats_password=passwords["worker"], **more
        )


@pytest.fixture(scope="module")
async def tls_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TlsServer]:
    data = tmp_path_factory.mktemp("tls-data")
    settings = Settings(data_dir=data, nats_tls=True, stream_max_bytes=1 << 28)
    config = embedded_config(settings, base=ROOT / "nats" / "test.conf")
    async with EmbeddedNats(store_dir=data / "jetstream", config=config, log_file=data / "nats.log") as server:
        yield TlsServer(server, msgspec.structs.replace(settings, nats_port=server.port))


def test_generated_keys_are_private(tls_server: TlsServer) -> None:
    files = tls_files(tls_server.settings)
    for key in (files.ca_key, files.server_key, files.client_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = files.server_cert.read_bytes()
    ensure_certificates(tls_server.settings)  # still valid: kept
    assert files.server_cert.read_bytes() == before


async def test_embedded_clients_use_the_generated_ca_and_certificate(tls_server: TlsServer) -> None:
    admin = await connect_nats(tls_server.settings, role="gateway")
    await provision(admin.jetstream(), tls_server.settings)
    await admin.close()
    nc = await connect_nats(tls_server.settings, role="publisher")
    try:
        assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
        ack = await nc.jetstream().publish("turbo.issue.created", b"{}")
        assert ack.stream == "TURBO_EVENTS"
    finally:
        await nc.close()


async def test_a_client_without_the_ca_is_refused_clearly(tls_server: TlsServer) -> None:
    with pytest.raises(NatsUnavailableError, match="TLS failed") as caught:
        await connect_nats(tls_server.external(), role="worker", timeout=3.0)
    assert "certificate" in str(caught.value).lower()


async def test_a_client_without_a_certificate_is_refused(tls_server: TlsServer) -> None:
    files = tls_files(tls_server.settings)
    with pytest.raises(NatsUnavailableError, match=r"(?i)certificate required"):
        await connect_nats(tls_server.external(nats_tls_ca=files.ca), role="worker", timeout=3.0)


async def test_a_client_with_the_ca_and_its_certificate_connects(tls_server: TlsServer) -> None:
    files = tls_files(tls_server.settings)
    settings = tls_server.external(nats_tls_ca=files.ca, nats_tls_cert=files.client_cert, nats_tls_key=files.client_key)
    nc = await connect_nats(settings, role="worker")
    try:
        assert nc.is_connected and nc.connected_url is not None and nc.connected_url.scheme == "tls"
    finally:
        await nc.close()


async def test_the_shipped_tls_conf_with_certificates_from_the_environment(
    tls_server: TlsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = tls_files(tls_server.settings)
    monkeypatch.setenv("TURBOHOOKS_NATS_TLS_SERVER_CERT", str(files.server_cert))
    monkeypatch.setenv("TURBOHOOKS_NATS_TLS_SERVER_KEY", str(files.server_key))
    monkeypatch.setenv("TURBOHOOKS_NATS_TLS_CA", str(files.ca))
    config = tmp_path / "server.conf"
    config.write_text((ROOT / "nats" / "test.conf").read_text() + "\n" + (ROOT / "nats" / "tls.conf").read_text())
    async with EmbeddedNats(store_dir=tmp_path / "js", config=config) as server:
        url = f"tls://127.0.0.1:{server.port}"
        good = Settings(
            nats_url=url, nats_tls_ca=files.ca, nats_tls_cert=files.client_cert, nats_tls_key=files.client_key
        )
        nc = await connect_nats(good)
        await nc.close()
        with pytest.raises(NatsUnavailableError):
            await connect_nats(Settings(nats_url=url, nats_tls_ca=files.ca), timeout=3.0)
