"""A region (onderwijsregio): the tenant. Platform configuration, not candidate data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from onderwijsregio.db import Base, JsonValue, UtcDateTime


class Region(Base):
    __tablename__ = "regions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    custom_fields: Mapped[list[dict[str, Any]]] = mapped_column(JsonValue)
    requests_per_second: Mapped[int] = mapped_column(Integer)
    burst: Mapped[int] = mapped_column(Integer)
    key_requests_per_second: Mapped[int] = mapped_column(Integer)
    key_burst: Mapped[int] = mapped_column(Integer)
    max_queued_mutations: Mapped[int] = mapped_column(Integer)
    self_service_fields: Mapped[list[str]] = mapped_column(JsonValue)
    allowed_origins: Mapped[list[str]] = mapped_column(JsonValue)
    # Bumped on every change: caches of region settings and schemas are keyed on it (contract §3.1).
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
