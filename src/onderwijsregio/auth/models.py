"""The audit log of admin overrides (contract §1.2): who acted for which region, where, when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from onderwijsregio.db import Base, UtcDateTime


class AdminOverride(Base):
    __tablename__ = "admin_overrides"
    __table_args__ = (Index("ix_admin_overrides_region_id_created_at", "region_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40))
    region_id: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(10))
    route: Mapped[str] = mapped_column(String(200))  # the route template, never a filled-in path
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
