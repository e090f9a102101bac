"""The region's event feed and its webhook endpoints (contract §3.7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, PrimaryKeyConstraint, String
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
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime)  # the first failure since a success
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookMessage(RegionScoped, Base):
    """One event on its way to one endpoint (the outbox): sent at least once, with the event's id as
    its stable `webhook-id`, retried on the schedule of §2.5."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        Index("ix_webhook_messages_due", "status", "next_attempt_at"),
        Index("ix_webhook_messages_region_id_sandbox_endpoint", "region_id", "sandbox", "endpoint_id"),
    )

    id: Mapped[str] = mapped_column(String(40))
    endpoint_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[dict[str, Any]] = mapped_column(JsonValue)  # the event as sent
    status: Mapped[str] = mapped_column(String(20))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookAttempt(RegionScoped, Base):
    """The deliveries log: one row per attempt (`GET /webhooks/{id}/deliveries`)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        Index(
            "ix_webhook_attempts_region_id_sandbox_endpoint",
            "region_id",
            "sandbox",
            "endpoint_id",
            "attempted_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(40))
    endpoint_id: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(40))
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime)
