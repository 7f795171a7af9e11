"""TLS for NATS: a local CA and certificates for the embedded server, and the clients' SSL context.

With ``TURBOHOOKS_NATS_TLS=true`` the embedded server requires TLS and a client
certificate signed by the local CA (``verify: true``); the CA, the server's
certificate (for ``127.0.0.1``, ``localhost`` and ``TURBOHOOKS_NATS_HOST``) and
one client certificate are generated in ``<data dir>/nats/tls`` on first start,
keys mode 0600. Against an external server, ``NATS_TLS_CA`` / ``NATS_TLS_CERT`` /
``NATS_TLS_KEY`` name the files; a ``tls://`` URL alone uses the system's CAs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ._errors import ConfigError
from .settings import Settings

__all__ = ("TlsFiles", "client_ssl_context", "ensure_certificates", "render_tls", "tls_files")

_VALID_DAYS: Final = 825
"""Certificates live this long (the longest a browser-era CA/B rule allows); renewed 30 days before they end."""
_RENEW_BEFORE: Final = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the embedded server's CA, certificates and keys are (PEM files)."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client-key.pem"


def tls_files(settings: Settings) -> TlsFiles:
    """``<data dir>/nats/tls``: the generated CA and certificates of the embedded server."""
    return TlsFiles(settings.data_dir / "nats" / "tls")


def _write(path: Path, data: bytes, mode: int) -> None:
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _still_valid(path: Path, hosts: list[str]) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    if cert.not_valid_after_utc - _RENEW_BEFORE < dt.datetime.now(dt.UTC):
        return False
    if not hosts:
        return True
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(n) for n in names.get_values_for_type(x509.IPAddress)} | set(names.get_values_for_type(x509.DNSName))
    return set(hosts) <= have


def ensure_certificates(settings: Settings) -> TlsFiles:
    """Generate the local CA, the server's and the client's certificates when missing or near their end."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    files = tls_files(settings)
    hosts = sorted({"127.0.0.1", "localhost", settings.nats_host})
    paths = (files.ca, files.ca_key, files.server_cert, files.server_key, files.client_cert, files.client_key)
    if (
        all(p.is_file() for p in paths)
        and _still_valid(files.server_cert, hosts)
        and _still_valid(files.client_cert, [])
    ):
        return files
    files.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=_VALID_DAYS)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "turbohooks"),
                x509.NameAttribute(NameOID.COMMON_NAME, common),
            ]
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("turbohooks local NATS CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)

    def san(host: str) -> x509.GeneralName:
        try:
            return x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            return x509.DNSName(host)

    server_pem, server_key = leaf("turbohooks nats-server", ExtendedKeyUsageOID.SERVER_AUTH, [san(h) for h in hosts])
    client_pem, client_key = leaf("turbohooks client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    _write(files.ca_key, pem_key(ca_key), 0o600)
    _write(files.ca, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.server_key, server_key, 0o600)
    _write(files.server_cert, server_pem, 0o644)
    _write(files.client_key, client_key, 0o600)
    _write(files.client_cert, client_pem, 0o644)
    return files


def render_tls(files: TlsFiles) -> str:
    """The server's ``tls`` block: its certificate, and client certificates required (``verify``)."""
    return "\n".join(
        [
            "# TLS with client certificates (streams/_tls.py; docs/security.md).",
            "tls {",
            f'  cert_file: "{files.server_cert.resolve()}"',
            f'  key_file: "{files.server_key.resolve()}"',
            f'  ca_file: "{files.ca.resolve()}"',
            "  verify: true",
            "  timeout: 5",
            "}",
            "",
        ]
    )


def _file(path: Path, variable: str) -> str:
    if not path.is_file():
        raise ConfigError(variable, f"{path}: no such file")
    return str(path)


def client_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The SSL context NATS connections use: ``None`` for a plain connection (or a ``tls://`` URL's defaults).

    The server's certificate is always verified (against ``NATS_TLS_CA``, the
    generated CA, or the system's); a client certificate is presented when one
    is configured or generated.
    """
    ca, cert, key = settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key
    if settings.nats_url is None and settings.nats_tls:
        files = tls_files(settings)
        ca = ca or files.ca
        if cert is None:
            cert, key = files.client_cert, files.client_key
    if ca is None and cert is None:
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=_file(ca, "NATS_TLS_CA") if ca is not None else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        if key is None:
            raise ConfigError("NATS_TLS_KEY", "is needed with NATS_TLS_CERT")
        context.load_cert_chain(_file(cert, "NATS_TLS_CERT"), _file(key, "NATS_TLS_KEY"))
    return context
