"""The mutation row: one accepted write (contract §2). The engine issue adds its execution columns."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from onderwijsregio.db import Base, UtcDateTime
from onderwijsregio.scope import RegionScoped

UNFINISHED = ("queued", "processing")


class Mutation(RegionScoped, Base):
    __tablename__ = "mutations"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        Index(
            "ix_mutations_region_id_sandbox_status_created_at", "region_id", "sandbox", "status", "created_at"
        ),
    )

    id: Mapped[str] = mapped_column(String(40))
    operation: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
