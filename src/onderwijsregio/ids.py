"""Opaque, typed, time-ordered ids (contract §1): `<prefix>_<26 Crockford base32 characters>`.

The 26 characters hold a 48-bit millisecond timestamp and 80 random bits (like a ULID), so ids sort
by creation time, which keyset pages rely on, while staying unguessable.
"""

from __future__ import annotations

import re
import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BODY_LENGTH = 26

PREFIXES = ("reg", "key", "cand", "int", "att", "mut", "wh", "evt", "dlv", "aud", "ses", "vc", "vr", "whm")


_lock = threading.Lock()
_last_value = 0


def _next_value() -> int:
    """Ids made in one process sort in the order they were made, also within one millisecond (a
    request's attachments or interactions keep their request order): a value not above the last one
    becomes the last one plus a random step (still unguessable from its neighbours)."""
    global _last_value
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    with _lock:
        if value <= _last_value:
            value = _last_value + 1 + secrets.randbits(40)
        _last_value = value
    return value


def new_id(prefix: str) -> str:
    assert prefix in PREFIXES, prefix
    value = _next_value()
    chars = []
    for _ in range(_BODY_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


_SHAPES = {prefix: re.compile(rf"^{prefix}_[0-9A-HJKMNP-TV-Z]{{{_BODY_LENGTH}}}$") for prefix in PREFIXES}


def has_shape(value: str, prefix: str) -> bool:
    """Whether `value` is an id of this type; anything else is simply not found (contract §1)."""
    return bool(_SHAPES[prefix].match(value))
