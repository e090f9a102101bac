"""The event feed and webhook endpoints (contract §3.7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.clock import to_rfc3339
from onderwijsregio.cursors import CursorCodec
from onderwijsregio.engine.signing import ROTATION_OVERLAP, SecretBox, new_secret
from onderwijsregio.errors import NotFound
from onderwijsregio.ids import has_shape, new_id
from onderwijsregio.pagination import PageRequest, page_by_id
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.webhooks.models import Event, WebhookEndpoint


def event_view(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "createdAt": to_rfc3339(event.created_at),
        "sandbox": event.sandbox,
        "data": event.data,
    }


async def feed(
    session: AsyncSession, scope: Scope, page: PageRequest, cursors: CursorCodec
) -> tuple[list[dict[str, Any]], str]:
    """Events in commit order after the cursor. The cursor comes back on every page, the last one
    too: a client keeps it and asks again later, missing nothing in between."""
    listing = f"events:{scope.region_id}:{scope.sandbox}"
    after = int(cursors.decode(listing, page.cursor)[0]) if page.cursor else 0
    rows = (
        await session.scalars(
            scoped(select(Event), Event, scope)
            .where(Event.seq > after)
            .order_by(Event.seq)
            .limit(page.page_size)
        )
    ).all()
    last = rows[-1].seq if rows else after
    return [event_view(e) for e in rows], cursors.encode(listing, [last])


def endpoint_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason,
        "createdAt": to_rfc3339(endpoint.created_at),
        "updatedAt": to_rfc3339(endpoint.updated_at),
    }


async def list_endpoints(
    session: AsyncSession, scope: Scope, page: PageRequest, cursors: CursorCodec
) -> tuple[list[dict[str, Any]], str | None]:
    statement = scoped(select(WebhookEndpoint), WebhookEndpoint, scope)
    listing = f"webhooks:{scope.region_id}:{scope.sandbox}"
    result = await page_by_id(session, statement, WebhookEndpoint.id, page, cursors, listing)
    return [endpoint_view(e) for e in result.items], result.cursor


async def find_endpoint(session: AsyncSession, scope: Scope, endpoint_id: str) -> WebhookEndpoint:
    found = None
    if has_shape(endpoint_id, "wh"):
        found = await session.scalar(
            scoped(select(WebhookEndpoint), WebhookEndpoint, scope).where(WebhookEndpoint.id == endpoint_id)
        )
    if found is None:
        raise NotFound("Webhook endpoint not found")
    return found


def new_endpoint(
    scope: Scope, box: SecretBox, given: dict[str, Any], now: datetime
) -> tuple[WebhookEndpoint, str]:
    """The endpoint and its secret (whsec_…), which is shown this once."""
    secret = new_secret()
    endpoint = WebhookEndpoint(
        region_id=scope.region_id,
        sandbox=scope.sandbox,
        id=new_id("wh"),
        url=given["url"],
        events=sorted(set(given["events"])),
        description=given.get("description"),
        enabled=True,
        disabled_reason=None,
        secret=box.seal(secret),
        previous_secret=None,
        previous_secret_until=None,
        created_at=now,
        updated_at=now,
    )
    return endpoint, secret


def change_endpoint(endpoint: WebhookEndpoint, changes: dict[str, Any], now: datetime) -> None:
    for name, value in changes.items():
        if name == "events":
            endpoint.events = sorted(set(value))
        elif name == "enabled":
            endpoint.enabled = value
            endpoint.disabled_reason = None if value else "Disabled by the region"
        else:
            setattr(endpoint, name, value)
    endpoint.updated_at = now


def rotate_secret(endpoint: WebhookEndpoint, box: SecretBox, now: datetime) -> str:
    """A new secret; the old one keeps signing alongside for 24 hours."""
    secret = new_secret()
    endpoint.previous_secret, endpoint.previous_secret_until = endpoint.secret, now + ROTATION_OVERLAP
    endpoint.secret = box.seal(secret)
    endpoint.updated_at = now
    return secret
