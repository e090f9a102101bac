"""Candidate verification codes, sessions, the mutations a session made, and the mail outbox.

Codes and tokens are stored only as hashes. A verification request waits in `verification_requests`
(its outbox) until the mail sender has looked the e-mail up and mailed a code, and is then deleted.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from onderwijsregio.db import Base, UtcDateTime
from onderwijsregio.scope import RegionScoped


class VerificationCode(RegionScoped, Base):
    __tablename__ = "verification_codes"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        Index(
            "ix_verification_codes_region_id_sandbox_email", "region_id", "sandbox", "email_key", "created_at"
        ),
    )

    id: Mapped[str] = mapped_column(String(40))
    email_key: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256 with the server's secret
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class CandidateSession(RegionScoped, Base):
    __tablename__ = "candidate_sessions"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        Index("ix_candidate_sessions_token_hash", "token_hash", unique=True),
        Index("ix_candidate_sessions_region_id_sandbox_email", "region_id", "sandbox", "email_key"),
    )

    id: Mapped[str] = mapped_column(String(40))
    token_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of the token
    email_key: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    idle_expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SessionMutation(RegionScoped, Base):
    """Which session accepted a mutation: the session may read it, nothing else may through it."""

    __tablename__ = "session_mutations"
    __table_args__ = (PrimaryKeyConstraint("region_id", "sandbox", "mutation_id"),)

    mutation_id: Mapped[str] = mapped_column(String(40))
    session_id: Mapped[str] = mapped_column(String(40))


class VerificationRequest(RegionScoped, Base):
    """A live verification request on its way to a mail (the outbox); deleted once handled."""

    __tablename__ = "verification_requests"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        Index("ix_verification_requests_due", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40))
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254))
    # The code, encrypted (AES-GCM, the server's secret), once one was made for this request.
    sealed_code: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
