"""Candidates and their interactions: region data, keyed and indexed by (region_id, sandbox, …)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKeyConstraint, Index, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from onderwijsregio.db import Base, JsonValue, UtcDateTime
from onderwijsregio.scope import RegionScoped


class Candidate(RegionScoped, Base):
    __tablename__ = "candidates"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        Index("ix_candidates_region_id_sandbox_created_at_id", "region_id", "sandbox", "created_at", "id"),
        Index("ix_candidates_region_id_sandbox_email_key", "region_id", "sandbox", "email_key", "created_at"),
        Index("ix_candidates_region_id_sandbox_phone_key", "region_id", "sandbox", "phone_key", "created_at"),
        Index("ix_candidates_region_id_sandbox_change_seq", "region_id", "sandbox", "change_seq"),
    )

    id: Mapped[str] = mapped_column(String(40))
    # The input properties as given (camelCase, customFields included); matched and filtered ones
    # also have columns of their own.
    properties: Mapped[dict[str, Any]] = mapped_column(JsonValue)
    email_key: Mapped[str] = mapped_column(String(254))
    phone_key: Mapped[str | None] = mapped_column(String(32))
    phase: Mapped[str] = mapped_column(String(40))
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    archived_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    privacy_consent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    change_seq: Mapped[int] = mapped_column(BigInteger)  # the last change's number (§1.3)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Interaction(RegionScoped, Base):
    __tablename__ = "interactions"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        ForeignKeyConstraint(
            ["region_id", "sandbox", "candidate_id"],
            ["candidates.region_id", "candidates.sandbox", "candidates.id"],
            ondelete="CASCADE",
        ),
        Index(
            "ix_interactions_region_id_sandbox_candidate",
            "region_id",
            "sandbox",
            "candidate_id",
            "performed_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(40))
    candidate_id: Mapped[str] = mapped_column(String(40))
    performed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    properties: Mapped[dict[str, Any]] = mapped_column(JsonValue)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
