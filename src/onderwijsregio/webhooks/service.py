"""The event feed and webhook endpoints (contract §3.7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.clock import to_rfc3339
from onderwijsregio.cursors import CursorCodec
from onderwijsregio.engine.signing import ROTATION_OVERLAP, SecretBox, new_secret
from onderwijsregio.errors import NotFound
from onderwijsregio.ids import has_shape, new_id
from onderwijsregio.pagination import PageRequest, page_by_id
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.webhooks.models import Event, WebhookAttempt, WebhookEndpoint, WebhookMessage


def event_view(event: Event) -> dict[str, Any]:
    return event_body(event.id, event.type, event.created_at, event.sandbox, event.data)


def event_body(
    event_id: str, event_type: str, created_at: datetime, sandbox: bool, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": event_type,
        "createdAt": to_rfc3339(created_at),
        "sandbox": sandbox,
        "data": data,
    }


async def feed(
    session: AsyncSession, scope: Scope, page: PageRequest, cursors: CursorCodec
) -> tuple[list[dict[str, Any]], str | None]:
    """Events in commit order after the cursor; `null` after the last page (§1.3). A client that
    asks again later with the cursor of its last page gets that page again and what came after it:
    nothing is missed."""
    listing = f"events:{scope.region_id}:{scope.sandbox}"
    after = int(cursors.decode(listing, page.cursor)[0]) if page.cursor is not None else 0
    newer = scoped(select(Event), Event, scope).where(Event.seq > after)
    rows = (await session.scalars(newer.order_by(Event.seq).limit(page.page_size + 1))).all()
    more, rows = len(rows) > page.page_size, rows[: page.page_size]
    cursor = cursors.encode(listing, [rows[-1].seq]) if more else None
    return [event_view(e) for e in rows], cursor


def new_message(endpoint: WebhookEndpoint, event: dict[str, Any], now: datetime) -> WebhookMessage:
    """The event on its way to the endpoint (the event's id is the stable `webhook-id`)."""
    return WebhookMessage(
        region_id=endpoint.region_id,
        sandbox=endpoint.sandbox,
        id=new_id("whm"),
        endpoint_id=endpoint.id,
        event_id=event["id"],
        event_type=event["type"],
        body=event,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        locked_until=None,
        created_at=now,
    )


def test_message(endpoint: WebhookEndpoint, now: datetime) -> WebhookMessage:
    """A webhook.test event for one endpoint (not part of the feed), whatever it subscribed to."""
    event: dict[str, Any] = {
        "id": new_id("evt"),
        "type": "webhook.test",
        "createdAt": to_rfc3339(now),
        "sandbox": endpoint.sandbox,
        "data": {},
    }
    return new_message(endpoint, event, now)


async def redelivery(
    session: AsyncSession, scope: Scope, endpoint: WebhookEndpoint, attempt_id: str, now: datetime
) -> WebhookMessage:
    """The event of one of the endpoint's attempts, on its way again with the same webhook-id."""
    attempt = None
    if has_shape(attempt_id, "dlv"):
        attempt = await session.scalar(
            scoped(select(WebhookAttempt), WebhookAttempt, scope).where(
                WebhookAttempt.id == attempt_id, WebhookAttempt.endpoint_id == endpoint.id
            )
        )
    sent = None
    if attempt is not None:
        sent = await session.scalar(
            scoped(select(WebhookMessage), WebhookMessage, scope).where(
                WebhookMessage.id == attempt.message_id
            )
        )
    if sent is None:
        raise NotFound("Delivery not found")
    return new_message(endpoint, sent.body, now)


async def attempts_of(
    session: AsyncSession, scope: Scope, endpoint_id: str, page: PageRequest, cursors: CursorCodec
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paged on (attempted_at, id)."""
    listing = f"deliveries:{scope.region_id}:{scope.sandbox}:{endpoint_id}"
    statement = scoped(select(WebhookAttempt), WebhookAttempt, scope).where(
        WebhookAttempt.endpoint_id == endpoint_id
    )
    if page.cursor is not None:
        moment, last_id = cursors.decode(listing, page.cursor)
        before = datetime.fromisoformat(moment)
        statement = statement.where(
            (WebhookAttempt.attempted_at < before)
            | ((WebhookAttempt.attempted_at == before) & (WebhookAttempt.id < last_id))
        )
    rows = (
        await session.scalars(
            statement.order_by(WebhookAttempt.attempted_at.desc(), WebhookAttempt.id.desc()).limit(
                page.page_size + 1
            )
        )
    ).all()
    more, rows = len(rows) > page.page_size, rows[: page.page_size]
    cursor = cursors.encode(listing, [rows[-1].attempted_at.isoformat(), rows[-1].id]) if more else None
    return [attempt_view(a) for a in rows], cursor


def attempt_view(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "eventId": attempt.event_id,
        "type": attempt.event_type,
        "statusCode": attempt.status_code,
        "durationMs": attempt.duration_ms,
        "attemptedAt": to_rfc3339(attempt.attempted_at),
        "error": attempt.error,
    }


async def remove_endpoint(session: AsyncSession, scope: Scope, endpoint: WebhookEndpoint) -> None:
    """The endpoint, its pending messages and its delivery log."""
    for model in (WebhookMessage, WebhookAttempt):
        await session.execute(scoped(delete(model), model, scope).where(model.endpoint_id == endpoint.id))
    await session.delete(endpoint)


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
