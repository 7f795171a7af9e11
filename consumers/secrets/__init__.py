"""Secrets at rest and on show: the keyring (AES-256-GCM envelopes), what is sealed, what is masked.

Light on purpose: the worker imports it (it decrypts the KV mirror and masks
the request headers it records); no SQL here.
"""

from ._keyring import ENVELOPE_PREFIX, KEY_FILE, Keyring, SecretKeyError, decode_key, key_id, new_key, secure_dir
from ._sealing import (
    MASK,
    is_credential_name,
    is_foreign,
    is_masked,
    is_secret_header,
    is_stale,
    mask,
    mask_config,
    mask_headers,
    mask_request_headers,
    masked,
    seal,
    seal_config,
    seal_headers,
    unseal,
    unseal_config,
    unseal_headers,
)

__all__ = (
    "ENVELOPE_PREFIX",
    "KEY_FILE",
    "MASK",
    "Keyring",
    "SecretKeyError",
    "decode_key",
    "is_credential_name",
    "is_foreign",
    "is_masked",
    "is_secret_header",
    "is_stale",
    "key_id",
    "mask",
    "mask_config",
    "mask_headers",
    "mask_request_headers",
    "masked",
    "new_key",
    "seal",
    "seal_config",
    "seal_headers",
    "secure_dir",
    "unseal",
    "unseal_config",
    "unseal_headers",
)
