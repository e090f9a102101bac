"""Opaque, typed, time-ordered ids (contract §1): `<prefix>_<26 Crockford base32 characters>`.

The 26 characters hold a 48-bit millisecond timestamp and 80 random bits (like a ULID), so ids sort
by creation time, which keyset pages rely on, while staying unguessable.
"""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BODY_LENGTH = 26

PREFIXES = ("reg", "key", "cand", "int", "att", "mut", "wh", "evt", "dlv", "aud", "ses", "vc", "vr", "whm")


def new_id(prefix: str) -> str:
    assert prefix in PREFIXES, prefix
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(_BODY_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


_SHAPES = {prefix: re.compile(rf"^{prefix}_[0-9A-HJKMNP-TV-Z]{{{_BODY_LENGTH}}}$") for prefix in PREFIXES}


def has_shape(value: str, prefix: str) -> bool:
    """Whether `value` is an id of this type; anything else is simply not found (contract §1)."""
    return bool(_SHAPES[prefix].match(value))
