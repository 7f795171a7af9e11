"""The TLS of a connection to a receiver: a client certificate (mutual TLS) and the CAs to trust.

Certificates are always verified for https, against the system's CAs or, when
a subscription gives a CA bundle, against that bundle *instead* (a private CA,
a self-signed receiver): there is no "skip verify". The client certificate
and key are PEM; the key must not be passphrase-protected.

:func:`tls_problem` is the check at save (every PEM parsed, the key matching
the certificate, the bundle holding CA certificates), :func:`ssl_context`
the context the delivery client connects with.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from typing import Final

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

__all__ = ("ClientTls", "ssl_context", "tls_problem")

_MAX_PEM: Final = 64 * 1024


class ClientTls(msgspec.Struct, frozen=True, kw_only=True):
    """A receiver's TLS options: ``client_cert`` + ``client_key`` for mutual TLS, ``ca_bundle`` to trust."""

    client_cert: str | None = None
    client_key: str | None = None
    ca_bundle: str | None = None

    def __bool__(self) -> bool:
        return bool(self.client_cert or self.client_key or self.ca_bundle)


def _certificates(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def tls_problem(tls: ClientTls) -> tuple[str, str] | None:
    """``(field, why)`` when the options cannot be used, else ``None``; fields ``tls_client_cert`` ...."""
    for field, value in (
        ("tls_client_cert", tls.client_cert),
        ("tls_client_key", tls.client_key),
        ("tls_ca_bundle", tls.ca_bundle),
    ):
        if value is not None and len(value) > _MAX_PEM:
            return field, f"is longer than {_MAX_PEM} characters"
    if (tls.client_cert is None) != (tls.client_key is None):
        missing = "tls_client_key" if tls.client_key is None else "tls_client_cert"
        return missing, "is required with the other half of the client certificate (mutual TLS needs both)"
    if tls.ca_bundle is not None:
        try:
            cas = _certificates(tls.ca_bundle)
        except ValueError:
            return "tls_ca_bundle", "is not a PEM bundle of certificates (-----BEGIN CERTIFICATE-----)"
        if not cas:
            return "tls_ca_bundle", "holds no certificate"
    if tls.client_cert is not None and tls.client_key is not None:
        try:
            chain = _certificates(tls.client_cert)
        except ValueError:
            return "tls_client_cert", "is not a PEM certificate (-----BEGIN CERTIFICATE-----)"
        if not chain:
            return "tls_client_cert", "holds no certificate"
        try:
            key = load_pem_private_key(tls.client_key.encode(), password=None)
        except (ValueError, TypeError) as exc:
            return "tls_client_key", f"is not an unencrypted PEM private key ({exc})"
        ours = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        theirs = chain[0].public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if ours != theirs:
            return "tls_client_key", "does not belong to the certificate (its public key differs)"
    try:
        ssl_context(tls)
    except (ssl.SSLError, ValueError, OSError) as exc:
        return "tls_client_cert" if tls.client_cert else "tls_ca_bundle", f"is refused by OpenSSL ({exc})"
    return None


def ssl_context(tls: ClientTls) -> ssl.SSLContext:
    """A verifying client context: the bundle's CAs (else the system's), the client certificate if any."""
    context = ssl.create_default_context(cadata=tls.ca_bundle) if tls.ca_bundle else ssl.create_default_context()
    if tls.client_cert and tls.client_key:
        # OpenSSL loads a certificate chain from files only: written for the call into a
        # private directory (0700, files 0600) and removed at once.
        with tempfile.TemporaryDirectory(prefix="turbohooks-tls-") as folder:
            cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            for path, text in ((cert, tls.client_cert), (key, tls.client_key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="ascii") as file:
                    file.write(text)
            context.load_cert_chain(cert, key)
    return context
