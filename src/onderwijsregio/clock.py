"""Time, in one place: UTC, truncated to milliseconds, and the contract's RFC 3339 output form."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_rfc3339(value: datetime | None) -> str | None:
    """`2026-03-24T10:15:00.123Z`: always UTC with `Z` (contract §1)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
