"""The keys secrets are encrypted under, and the envelope they are stored in.

A value at rest is ``enc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``:
AES-256-GCM, a random 96-bit nonce per value, the key id (8 hex digits of the
key's SHA-256) telling which key of the ring opens it. Several keys coexist
during a rotation: the first encrypts, every one decrypts. A value without the
prefix is clear text from an earlier release: it is read as is (and encrypted
on the next start, see :meth:`SubscriptionStore.reseal`).

The keys come from ``TURBOHOOKS_SECRET_KEY`` (base64 of 32 bytes; several,
comma-separated, during a rotation) or, unset, from the key file
``<data dir>/secret-key`` (mode 0600, generated on first start: the processes
of one machine share it). A file-based ring re-reads its file when it changed,
so that ``turbohooks secrets rotate-key`` reaches running processes: before
each encryption (new values go under the new key) and when a value names a key
it does not hold.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams import Settings, TurbohooksError

__all__ = (
    "ENVELOPE_PREFIX",
    "KEY_FILE",
    "Keyring",
    "SecretKeyError",
    "decode_key",
    "key_id",
    "new_key",
    "secure_dir",
    "write_key_file",
)

ENVELOPE_PREFIX: Final = "enc:v1:"
KEY_FILE: Final = "secret-key"
"""The key file's name in the data dir."""

_NONCE: Final = 12
_AAD: Final = b"turbohooks secret v1"
_KEY_BYTES: Final = 32


class SecretKeyError(TurbohooksError):
    """A secret cannot be decrypted (its key is not in the ring), or a key is unusable."""


def new_key() -> bytes:
    """32 random bytes: a new AES-256 key."""
    return secrets.token_bytes(_KEY_BYTES)


def key_id(key: bytes) -> str:
    """The key's id in envelopes: 8 hex digits of its SHA-256 (it reveals nothing of the key)."""
    return hashlib.sha256(key).hexdigest()[:8]


def decode_key(text: str) -> bytes:
    """A key from its base64 text; ``ValueError`` saying what to write (never echoing the value)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 (generate a key with `openssl rand -base64 32`)") from None
    if len(key) != _KEY_BYTES:
        raise ValueError(f"must be {_KEY_BYTES} bytes in base64 (`openssl rand -base64 32`), not {len(key)}")
    return key


def _encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


_rings: dict[tuple[str, tuple[str, ...]], Keyring] = {}
_rings_lock: Final = threading.Lock()
_ephemeral: list[Keyring] = []


class Keyring:
    """The keys of this process: ``keys[0]`` encrypts, all decrypt."""

    def __init__(self, keys: Sequence[bytes], *, path: Path | None = None) -> None:
        if not keys:
            raise SecretKeyError("turbohooks: a keyring needs at least one key")
        self.path = path
        """The key file read (``None``: keys from ``TURBOHOOKS_SECRET_KEY``, or in memory)."""
        self._stamp: tuple[int, int] | None = None
        self._set(keys)
        if path is not None:
            self._stamp = _stamp(path)

    def _set(self, keys: Sequence[bytes]) -> None:
        self._keys = {key_id(key): AESGCM(key) for key in keys}
        self._order = [key_id(key) for key in keys]
        self._raw = list(keys)

    # --- where the keys come from

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        """The ring of ``settings`` (``TURBOHOOKS_SECRET_KEY``, else the data dir's key file), one per process."""
        secure_dir(settings.data_dir)
        path = (settings.data_dir / KEY_FILE).resolve()
        cache_key = (str(path), settings.secret_key)
        with _rings_lock:
            ring = _rings.get(cache_key)
            if ring is None:
                if settings.secret_key:
                    ring = cls([decode_key(text) for text in settings.secret_key])
                else:
                    ring = cls.from_file(path, create=True)
                _rings[cache_key] = ring
            return ring

    @classmethod
    def from_file(cls, path: Path, *, create: bool = False) -> Keyring:
        """The ring of a key file; ``create`` writes one with a new key (mode 0600) when there is none."""
        if create and not path.exists():
            write_key_file(path, [new_key()], exclusive=True)
        return cls(_read_key_file(path), path=path)

    @classmethod
    def ephemeral(cls) -> Keyring:
        """A ring whose one key lives in this process only: for stores built without settings (tests)."""
        with _rings_lock:
            if not _ephemeral:
                _ephemeral.append(cls([new_key()]))
            return _ephemeral[0]

    # --- what it does

    @property
    def current_id(self) -> str:
        """The id of the key new values are encrypted under."""
        self.refresh()
        return self._order[0]

    @property
    def ids(self) -> tuple[str, ...]:
        """Every key id of the ring, the current one first."""
        return tuple(self._order)

    def encrypt(self, text: str) -> str:
        """``text`` sealed under the current key (an envelope is returned as is)."""
        if text.startswith(ENVELOPE_PREFIX):
            return text
        kid = self.current_id
        nonce = os.urandom(_NONCE)
        sealed = self._keys[kid].encrypt(nonce, text.encode(), _AAD)
        return f"{ENVELOPE_PREFIX}{kid}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, value: str) -> str:
        """The clear text of an envelope; a value without the prefix (an earlier release's) as is."""
        if not value.startswith(ENVELOPE_PREFIX):
            return value
        kid, _, body = value[len(ENVELOPE_PREFIX) :].partition(":")
        aead = self._keys.get(kid)
        if aead is None:
            self.refresh(force=True)
            aead = self._keys.get(kid)
        if aead is None:
            raise SecretKeyError(
                f"turbohooks: a secret is encrypted under key {kid}, which this process does not have "
                f"(it has {', '.join(self._order)}): give every process the same TURBOHOOKS_SECRET_KEY, "
                "or the same data dir (its secret-key file)"
            )
        try:
            raw = base64.urlsafe_b64decode(body)
            return aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretKeyError(f"turbohooks: a secret under key {kid} is damaged (it does not decrypt)") from None

    def is_current(self, value: str) -> bool:
        """Whether ``value`` is sealed under the current key (nothing to re-encrypt)."""
        return value.startswith(f"{ENVELOPE_PREFIX}{self.current_id}:")

    def is_foreign(self, value: str) -> bool:
        """Whether ``value`` is sealed under a key this ring does not hold (another deployment's, or a lost one).

        Nothing here can re-encrypt it: a rotation leaves it as it is and says so.
        """
        if not value.startswith(ENVELOPE_PREFIX):
            return False
        self.refresh()
        return value[len(ENVELOPE_PREFIX) :].partition(":")[0] not in self.ids

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the key file if it changed since it was read (a rotation); nothing for other rings."""
        if self.path is None:
            return
        stamp = _stamp(self.path)
        if stamp == self._stamp and not force:
            return
        with contextlib.suppress(FileNotFoundError, SecretKeyError):
            keys = _read_key_file(self.path)
            self._set(keys)
            self._stamp = stamp

    # --- rotation (a file-based ring)

    def add_current(self, key: bytes) -> None:
        """Put ``key`` first (it encrypts from now on), keeping the others to decrypt; written to the file."""
        self._set([key, *(k for k in self._raw if k != key)])
        self._save()

    def retire_others(self) -> tuple[str, ...]:
        """Keep the current key only (once nothing is sealed under the others); the ids dropped."""
        dropped = tuple(self._order[1:])
        self._set(self._raw[:1])
        self._save()
        return dropped

    def _save(self) -> None:
        if self.path is not None:
            write_key_file(self.path, self._raw)
            self._stamp = _stamp(self.path)


def secure_dir(path: Path) -> None:
    """Create the data dir if missing, and make it 0700: the key file, SQLite files and JetStream store are in it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_mtime_ns, info.st_size


def _read_key_file(path: Path) -> list[bytes]:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretKeyError(f"turbohooks: cannot read the secret key file {path}: {exc}") from None
    keys: list[bytes] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            keys.append(decode_key(stripped))
        except ValueError as exc:
            raise SecretKeyError(f"turbohooks: the secret key file {path}, line {number}: {exc}") from None
    if not keys:
        raise SecretKeyError(f"turbohooks: the secret key file {path} holds no key")
    return keys


def write_key_file(path: Path, keys: Iterable[bytes], *, exclusive: bool = False) -> None:
    """Write the keys (the current one first), mode 0600, atomically.

    ``exclusive``: only if there is no file yet (two processes starting at once
    agree on the first one's key: the loser reads the winner's complete file).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = (
        "# turbohooks secret keys (base64, AES-256-GCM): the first encrypts, all decrypt.\n"
        "# Losing this file loses every stored signing secret; back it up with the database.\n"
        + "".join(_encode_key(key) + "\n" for key in keys)
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
