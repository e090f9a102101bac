"""The region's event feed and its webhook endpoints (contract §3.7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from onderwijsregio.db import Base, JsonValue, UtcDateTime
from onderwijsregio.scope import RegionScoped


class Event(RegionScoped, Base):
    """What changed, thin (ids only, never personal data), numbered in commit order per lane."""

    __tablename__ = "events"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "seq"),
        Index("ix_events_region_id_sandbox_created_at", "region_id", "sandbox", "created_at"),
    )

    seq: Mapped[int] = mapped_column(BigInteger)
    id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JsonValue)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookEndpoint(RegionScoped, Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        Index("ix_webhook_endpoints_region_id_sandbox_created_at", "region_id", "sandbox", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JsonValue)
    description: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    # The signing secret, encrypted with the server's secret; the previous one signs alongside for
    # 24 h after a rotation.
    secret: Mapped[str] = mapped_column(String(200))
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
