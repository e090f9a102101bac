"""Attachments of candidates, and the files staged for mutations that have not been applied yet."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKeyConstraint, Index, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from onderwijsregio.db import Base, UtcDateTime
from onderwijsregio.scope import RegionScoped


class Attachment(RegionScoped, Base):
    __tablename__ = "attachments"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        ForeignKeyConstraint(
            ["region_id", "sandbox", "candidate_id"],
            ["candidates.region_id", "candidates.sandbox", "candidates.id"],
            ondelete="CASCADE",
        ),
        Index(
            "ix_attachments_region_id_sandbox_candidate", "region_id", "sandbox", "candidate_id", "created_at"
        ),
    )

    id: Mapped[str] = mapped_column(String(40))
    candidate_id: Mapped[str] = mapped_column(String(40))
    field: Mapped[str] = mapped_column(String(20))  # curriculumVitae or otherAttachments
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class StagedFile(RegionScoped, Base):
    """A file in storage for an accepted mutation that is not applied yet (base64 decoded at
    acceptance, or a URL the worker will fetch). The sweeper keeps it while its mutation is
    unfinished, and removes it once the mutation is final and no attachment took the file over."""

    __tablename__ = "staged_files"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "attachment_id"),
        Index("ix_staged_files_region_id_sandbox_mutation", "region_id", "sandbox", "mutation_id"),
    )

    attachment_id: Mapped[str] = mapped_column(String(40))
    mutation_id: Mapped[str] = mapped_column(String(40))
    storage_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
