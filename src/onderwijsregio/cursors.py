"""Signed, opaque keyset cursors (contract §1.3): tampering is detected, depth costs nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from onderwijsregio.errors import InvalidCursor

MAX_CURSOR_LENGTH = 2000


class CursorCodec:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def encode(self, listing: str, position: list[Any]) -> str:
        """A cursor for one listing (e.g. "regions"): it cannot be replayed against another one."""
        payload = base64.urlsafe_b64encode(orjson.dumps({"l": listing, "p": position})).rstrip(b"=")
        return f"{payload.decode()}.{self._sign(payload)}"

    def decode(self, listing: str, cursor: str) -> list[Any]:
        if len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
            raise InvalidCursor()
        payload, _, signature = cursor.partition(".")
        if not payload or not hmac.compare_digest(signature.encode(), self._sign(payload.encode()).encode()):
            raise InvalidCursor()
        try:
            data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            raise InvalidCursor() from None
        if not isinstance(data, dict) or data.get("l") != listing or not isinstance(data.get("p"), list):
            raise InvalidCursor()
        position: list[Any] = data["p"]
        return position

    def _sign(self, payload: bytes) -> str:
        digest = hmac.new(self._secret, payload, hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode()
