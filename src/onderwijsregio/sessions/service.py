"""Candidate verification and sessions (contract §3.5).

Nothing an answer shows, nor the work done before answering, depends on whether an e-mail address
is known: a live request only queues a `VerificationRequest`, and the mail sender looks the address
up afterwards. In sandbox the code is in the answer, for unknown addresses too (one that opens
nothing). Codes and tokens are random (`secrets`) and stored as keyed or plain hashes only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.candidates.models import Candidate
from onderwijsregio.candidates.normalize import email_key
from onderwijsregio.clock import to_rfc3339

__all__ = ["email_key", "to_rfc3339"]  # used by the routes through this module
from onderwijsregio.errors import NotFound
from onderwijsregio.ids import new_id
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.sessions.models import (
    CandidateSession,
    SessionMutation,
    VerificationCode,
    VerificationRequest,
)

CODE_LIFETIME = timedelta(minutes=10)
MAX_WRONG_CODES = 5
SESSION_LIFETIME = timedelta(hours=24)
IDLE_LIFETIME = timedelta(minutes=30)
# Verification requests: per e-mail address, and per key (a region's site uses one key for everyone).
PER_EMAIL = (5, 3600)
PER_KEY = (120, 60)
TOKEN_PREFIX = "ocs_"  # noqa: S105 - a public prefix that tells a token from a key, not a secret
_SIX_DIGITS = re.compile(r"^\d{6}$")


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def code_digest(key: bytes, code_id: str, code: str) -> str:
    """Keyed with the server's secret: a stolen table does not give six digits away by brute force."""
    return hmac.new(key, f"{code_id}:{code}".encode(), hashlib.sha256).hexdigest()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def private_name(key: bytes, scope: Scope, address: str) -> str:
    """A rate-limit bucket name for an address that does not put the address in the limit store."""
    text = f"{scope.region_id}:{scope.sandbox}:{email_key(address)}"
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


async def is_known(session: AsyncSession, scope: Scope, address_key: str) -> bool:
    found = await session.scalar(
        scoped(select(Candidate.id), Candidate, scope).where(Candidate.email_key == address_key).limit(1)
    )
    return found is not None


def new_code_row(scope: Scope, key: bytes, address_key: str, code: str, now: datetime) -> VerificationCode:
    code_id = new_id("vc")
    return VerificationCode(
        region_id=scope.region_id,
        sandbox=scope.sandbox,
        id=code_id,
        email_key=address_key,
        code_hash=code_digest(key, code_id, code),
        failed_attempts=0,
        created_at=now,
        expires_at=now + CODE_LIFETIME,
        used_at=None,
    )


async def issue_code(
    session: AsyncSession,
    scope: Scope,
    key: bytes,
    address_key: str,
    now: datetime,
    *,
    code: str | None = None,
) -> str:
    """A new code for a known address (`code`, or a new one); it replaces the address's earlier
    unused codes."""
    await session.execute(
        scoped(update(VerificationCode), VerificationCode, scope)
        .where(VerificationCode.email_key == address_key, VerificationCode.used_at.is_(None))
        .values(used_at=now)
    )
    code = code or new_code()
    session.add(new_code_row(scope, key, address_key, code, now))
    return code


def queue_request(session: AsyncSession, scope: Scope, address: str, now: datetime) -> None:
    session.add(
        VerificationRequest(
            region_id=scope.region_id,
            sandbox=scope.sandbox,
            id=new_id("vr"),
            email=address,
            email_key=email_key(address),
            sealed_code=None,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
    )


async def redeem(
    session: AsyncSession, scope: Scope, key: bytes, address: str, code: str, now: datetime
) -> bool:
    """Uses the address's current code when `code` is it; a wrong one counts against the code."""
    current = await session.scalar(
        scoped(select(VerificationCode), VerificationCode, scope)
        .where(
            VerificationCode.email_key == email_key(address),
            VerificationCode.used_at.is_(None),
            VerificationCode.expires_at > now,
            VerificationCode.failed_attempts < MAX_WRONG_CODES,
        )
        .order_by(VerificationCode.created_at.desc())
        .limit(1)
    )
    if current is None:
        return False
    matches = _SIX_DIGITS.match(code) is not None and hmac.compare_digest(
        current.code_hash, code_digest(key, current.id, code)
    )
    codes = scoped(update(VerificationCode), VerificationCode, scope).where(VerificationCode.id == current.id)
    if not matches:
        await session.execute(codes.values(failed_attempts=VerificationCode.failed_attempts + 1))
        return False
    # Single use, also against a concurrent redemption of the same code.
    used = await session.execute(codes.where(VerificationCode.used_at.is_(None)).values(used_at=now))
    return bool(used.rowcount == 1)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class NewSession:
    token: str
    row: CandidateSession

    def view(self) -> dict[str, Any]:
        return {
            "sessionToken": self.token,
            "expiresAt": to_rfc3339(self.row.expires_at),
            "idleExpiresAt": to_rfc3339(self.row.idle_expires_at),
        }


async def open_session(session: AsyncSession, scope: Scope, address: str, now: datetime) -> NewSession:
    """A new session for the address; its older sessions in this region and mode end."""
    address_key = email_key(address)
    await end_sessions_of(session, scope, address_key, now)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)  # 256 random bits
    row = CandidateSession(
        region_id=scope.region_id,
        sandbox=scope.sandbox,
        id=new_id("ses"),
        token_hash=token_digest(token),
        email_key=address_key,
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
        idle_expires_at=now + IDLE_LIFETIME,
        ended_at=None,
    )
    session.add(row)
    return NewSession(token, row)


async def end_sessions_of(session: AsyncSession, scope: Scope, address_key: str, now: datetime) -> None:
    await session.execute(
        scoped(update(CandidateSession), CandidateSession, scope)
        .where(CandidateSession.email_key == address_key, CandidateSession.ended_at.is_(None))
        .values(ended_at=now)
    )


async def live_session(
    session: AsyncSession, token: str, sandbox: bool, now: datetime
) -> CandidateSession | None:
    """The session behind a token, if it is alive in this mode; its idle deadline moves on."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    found = await session.scalar(
        select(CandidateSession)
        .where(CandidateSession.token_hash == token_digest(token))
        .execution_options(cross_region=True)  # the token is what tells the region
    )
    if found is None or found.sandbox != sandbox or found.ended_at is not None:
        return None
    if now >= found.expires_at or now >= found.idle_expires_at:
        return None
    found.idle_expires_at = min(now + IDLE_LIFETIME, found.expires_at)
    return found


async def ensure_own(session: AsyncSession, scope: Scope, candidate_id: str, address_key: str) -> None:
    """A session writes only to candidates of its own e-mail address; others do not exist for it."""
    found = await session.scalar(
        scoped(select(Candidate.id), Candidate, scope).where(
            Candidate.id == candidate_id, Candidate.email_key == address_key
        )
    )
    if found is None:
        raise NotFound("Candidate not found")


async def created_by(session: AsyncSession, scope: Scope, mutation_id: str, session_id: str) -> bool:
    found = await session.scalar(
        scoped(select(SessionMutation.mutation_id), SessionMutation, scope).where(
            SessionMutation.mutation_id == mutation_id, SessionMutation.session_id == session_id
        )
    )
    return found is not None


async def end_session(session: AsyncSession, scope: Scope, session_id: str, now: datetime) -> None:
    await session.execute(
        scoped(update(CandidateSession), CandidateSession, scope)
        .where(CandidateSession.id == session_id)
        .values(ended_at=now)
    )
