"""Callback signing (contract §2.5): the region's secret, its rotation, and both signature schemes.

The secret must be usable to sign, so it cannot be stored hashed: it is stored encrypted (AES-GCM,
key derived from ONDERWIJSREGIO_SECRET_KEY), and decrypted only to sign or to show it to the
region's managers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.clock import utc_now
from onderwijsregio.engine.models import SigningSecret

ROTATION_OVERLAP = timedelta(hours=24)
PREFIX = "whsec_"


class SecretBox:
    """Encrypts secrets at rest with a key derived from the server's secret key."""

    def __init__(self, server_secret: bytes) -> None:
        self._aead = AESGCM(hashlib.sha256(b"onderwijsregio signing secrets\0" + server_secret).digest())
        # For keyed request fingerprints (idempotency), separate from the encryption key.
        self.fingerprint_key = hashlib.sha256(b"onderwijsregio fingerprints\0" + server_secret).digest()

    def seal(self, plain: str) -> str:
        nonce = secrets.token_bytes(12)
        return "v1:" + base64.b64encode(nonce + self._aead.encrypt(nonce, plain.encode(), None)).decode()

    def open(self, sealed: str) -> str:
        raw = base64.b64decode(sealed.removeprefix("v1:"))
        return self._aead.decrypt(raw[:12], raw[12:], None).decode()


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class SigningKeys:
    current: str
    created_at: datetime
    previous: str | None  # still signing during the overlap after a rotation

    def all(self) -> list[str]:
        return [self.current] + ([self.previous] if self.previous else [])


async def signing_keys(session: AsyncSession, box: SecretBox, region_id: str) -> SigningKeys:
    """The region's secrets, creating the first one on first use."""
    row = await session.get(SigningSecret, region_id)
    if row is None:
        row = SigningSecret(region_id=region_id, secret=box.seal(new_secret()), created_at=utc_now())
        try:
            async with session.begin_nested():
                session.add(row)
                await session.flush()
        except IntegrityError:  # created at the same moment by another request
            row = await session.get(SigningSecret, region_id, populate_existing=True)
            assert row is not None
    previous = None
    if row.previous_secret and row.previous_valid_until and row.previous_valid_until > utc_now():
        previous = box.open(row.previous_secret)
    return SigningKeys(box.open(row.secret), row.created_at, previous)


async def rotate(session: AsyncSession, box: SecretBox, region_id: str) -> SigningKeys:
    await signing_keys(session, box, region_id)
    row = await session.get(SigningSecret, region_id, with_for_update=True, populate_existing=True)
    assert row is not None
    now = utc_now()
    row.previous_secret, row.previous_valid_until = row.secret, now + ROTATION_OVERLAP
    row.secret, row.created_at = box.seal(new_secret()), now
    await session.flush()
    return await signing_keys(session, box, region_id)


def _key_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def _hmac(secret: str, message: bytes) -> str:
    return base64.b64encode(hmac.new(_key_bytes(secret), message, hashlib.sha256).digest()).decode()


def signature_headers(
    keys: SigningKeys, *, message_id: str, timestamp: int, nonce: str, path_and_query: str, body: bytes
) -> dict[str, str]:
    """Both schemes, signed with every live secret (the newest first)."""
    legacy = f"{timestamp}.{nonce}.{path_and_query}.".encode() + body
    standard = f"{message_id}.{timestamp}.".encode() + body
    return {
        "x-mutationengine-timestamp": str(timestamp),
        "x-mutationengine-nonce": nonce,
        "x-mutationengine-signature": " ".join(f"v2={_hmac(s, legacy)}" for s in keys.all()),
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(f"v1,{_hmac(s, standard)}" for s in keys.all()),
    }
