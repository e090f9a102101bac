"""The engine's tables: mutations, their per-(region, sandbox) lanes, idempotency records, and the
callback outbox. Every one leads its keys with (region_id, sandbox)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, PrimaryKeyConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from onderwijsregio.db import Base, JsonValue, UtcDateTime
from onderwijsregio.scope import RegionScoped

UNFINISHED = ("queued", "processing")
FINAL = ("succeeded", "failed", "canceled")


class Mutation(RegionScoped, Base):
    """One accepted write. `seq` is its place in its lane: acceptance order, gap-free per lane."""

    __tablename__ = "mutations"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        Index("ix_mutations_region_id_sandbox_seq", "region_id", "sandbox", "seq", unique=True),
        Index(
            "ix_mutations_region_id_sandbox_status_created_at", "region_id", "sandbox", "status", "created_at"
        ),
    )

    id: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(BigInteger)
    operation: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    # The request's items until the mutation is final; then cleared, as nobody may read them.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JsonValue)
    resource_ids: Mapped[list[str]] = mapped_column(JsonValue)
    results: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonValue)
    succeeded_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class MutationCounter(RegionScoped, Base):
    """Acceptance order of one (region, sandbox): raised by every acceptance, whose row lock until
    commit makes `seq` follow commit order. Apart from the lane so that accepting never waits for
    a batch being applied, nor a worker's claim for an acceptance."""

    __tablename__ = "mutation_counters"
    __table_args__ = (PrimaryKeyConstraint("region_id", "sandbox"),)

    last_accepted_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class MutationLane(RegionScoped, Base):
    """The apply state of one (region, sandbox): how far it got, and the lease of its worker.

    `last_done_seq` and `change_seq` only move inside an apply transaction holding the lease.
    """

    __tablename__ = "mutation_lanes"
    __table_args__ = (PrimaryKeyConstraint("region_id", "sandbox"),)

    last_done_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    event_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # the feed's (§3.7)
    lease_token: Mapped[str | None] = mapped_column(String(40))
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    available_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    stalled_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    transient_failures: Mapped[int] = mapped_column(Integer, default=0)


class IdempotencyRecord(RegionScoped, Base):
    """A request hash and the 202's ids: never personal data, so it survives an erasure (§2.4)."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "key"),
        Index("ix_idempotency_records_region_id_sandbox_expires_at", "region_id", "sandbox", "expires_at"),
    )

    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    mutation_id: Mapped[str] = mapped_column(String(40))
    response: Mapped[dict[str, Any]] = mapped_column(JsonValue)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CallbackDelivery(RegionScoped, Base):
    """The outbox row of a mutation's callback (§2.5), written with the mutation's completion."""

    __tablename__ = "callback_deliveries"
    __table_args__ = (
        PrimaryKeyConstraint("region_id", "sandbox", "id"),
        Index("ix_callback_deliveries_region_id_sandbox_mutation_id", "region_id", "sandbox", "mutation_id"),
        # The work index of the delivery loop, across regions (see docs/decisions.md).
        Index("ix_callback_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40))  # also the stable webhook-id of every attempt
    mutation_id: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(200))
    response_excerpt: Mapped[str | None] = mapped_column(Text)  # at most 1 KiB, shown to nobody
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SigningSecret(Base):
    """A region's callback signing secret, one for live and sandbox (§2.5), encrypted at rest."""

    __tablename__ = "signing_secrets"

    region_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    secret: Mapped[str] = mapped_column(String(300))
    previous_secret: Mapped[str | None] = mapped_column(String(300))
    previous_valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
