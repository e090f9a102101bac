"""The key format: `oreg_` + 43 base62 characters (256 random bits) + a 6-character checksum.

The checksum lets a typo or a truncated key be refused without a database look-up, and lets
secret scanners recognise a real key. Only the SHA-256 of the whole key is stored: the key holds
256 random bits, so a fast hash is enough (no password-style stretching needed).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

KEY_PREFIX = "oreg_"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_LENGTH = 43  # 62**43 > 2**256
_CHECKSUM_LENGTH = 6  # 62**6 > 2**32
_SHAPE = re.compile(rf"^{KEY_PREFIX}[0-9A-Za-z]{{{_RANDOM_LENGTH + _CHECKSUM_LENGTH}}}$")
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 8


def _base62(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, remainder = divmod(value, 62)
        chars.append(_BASE62[remainder])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECKSUM_LENGTH)


def generate_key() -> str:
    body = _base62(secrets.randbits(256), _RANDOM_LENGTH)
    return f"{KEY_PREFIX}{body}{_checksum(body)}"


def is_well_formed(key: str) -> bool:
    if not _SHAPE.match(key):
        return False
    body, checksum = key[len(KEY_PREFIX) : -_CHECKSUM_LENGTH], key[-_CHECKSUM_LENGTH:]
    return secrets.compare_digest(checksum, _checksum(body))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """The first characters, shown in lists so people can tell their keys apart."""
    return key[:DISPLAY_PREFIX_LENGTH]
