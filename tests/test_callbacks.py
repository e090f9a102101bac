"""Signed callbacks (contract §2.5) to a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from onderwijsregio.engine.models import CallbackDelivery
from onderwijsregio.engine.outbox import RETRY_SCHEDULE, Outcome, next_attempt
from onderwijsregio.scope import Scope, scoped
from tests.conftest import Tenant
from tests.engine_helpers import accepted, final
from tests.receiver import Receiver, Reply
from tests.test_envelope import assert_error

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


async def wait_for(condition: Any, within: float = 15) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await condition()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def secret_of(client: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await client.get("/api/v2/webhooks/signing-secret", headers=tenant.headers())
    assert response.status_code == 200, response.text
    secret: str = response.json()["data"]["secret"]
    return secret


def v2_signature(secret: str, timestamp: str, nonce: str, path_and_query: str, body: bytes) -> str:
    """Written apart from the server's code, from the contract's formula."""
    key = base64.b64decode(secret[len("whsec_") :])
    message = f"{timestamp}.{nonce}.{path_and_query}.".encode() + body
    return "v2=" + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


async def delivery_of(sessions: Sessions, tenant: Tenant, mutation_id: str) -> CallbackDelivery | None:
    async with sessions() as session:
        row: CallbackDelivery | None = await session.scalar(
            scoped(select(CallbackDelivery), CallbackDelivery, Scope(tenant.id, False)).where(
                CallbackDelivery.mutation_id == mutation_id
            )
        )
        return row


async def test_callback_is_delivered_signed_both_ways(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    path_and_query = f"/callbacks/{uuid.uuid4().hex}?token=abc&attempt=first"
    mutation_id = await accepted(client, tenant, [{"value": "v"}], callbackUrl=receiver.url(path_and_query))
    await final(client, tenant, mutation_id)
    [request] = await wait_for(lambda: _requests(receiver))
    assert request.path == path_and_query
    body = request.body
    document = json.loads(body)
    assert document["type"] == "mutation.completed" and document["sandbox"] is False
    assert document["mutation"]["id"] == mutation_id and document["mutation"]["status"] == "succeeded"
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert abs(int(headers["x-mutationengine-timestamp"]) - time.time()) < 60
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-mutationengine-nonce"])
    secret = await secret_of(client, tenant)
    expected = v2_signature(
        secret, headers["x-mutationengine-timestamp"], headers["x-mutationengine-nonce"], path_and_query, body
    )
    assert headers["x-mutationengine-signature"] == expected
    Webhook(secret).verify(
        body, {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    )
    state = await wait_for(lambda: _callback_state(client, tenant, mutation_id, "delivered"))
    assert state["attempts"] == 1 and state["lastStatusCode"] == 200 and state["lastAttemptAt"].endswith("Z")


async def _requests(receiver: Receiver) -> list[Any]:
    return list(receiver.requests)


async def _callback_state(
    client: httpx.AsyncClient, tenant: Tenant, mutation_id: str, status: str, prefix: str = "/api/v2"
) -> dict[str, Any] | None:
    data = (await client.get(f"{prefix}/mutations/{mutation_id}", headers=tenant.headers())).json()["data"]
    callback: dict[str, Any] = data["callback"]
    return callback if callback["status"] == status else None


async def test_sandbox_callbacks_say_sandbox(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    response = await client.post(
        "/api/sandbox/test-records",
        json=[{"value": "s"}],
        params={"callbackUrl": receiver.url()},
        headers=tenant.headers(),
    )
    [request] = await wait_for(lambda: _requests(receiver))
    document = json.loads(request.body)
    assert document["sandbox"] is True
    assert document["mutation"]["id"] == response.json()["data"]["mutationId"]


async def test_after_a_rotation_both_secrets_sign_for_a_day(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    old = await secret_of(client, tenant)
    rotated = await client.post("/api/v2/webhooks/signing-secret/rotate", headers=tenant.headers())
    new = rotated.json()["data"]["secret"]
    assert new != old and new.startswith("whsec_")
    assert await secret_of(client, tenant) == new
    await accepted(client, tenant, [{"value": "r"}], callbackUrl=receiver.url("/r"))
    [request] = await wait_for(lambda: _requests(receiver))
    headers = request.headers
    values = headers["x-mutationengine-signature"].split(" ")
    stamp, nonce = headers["x-mutationengine-timestamp"], headers["x-mutationengine-nonce"]
    assert values == [
        v2_signature(new, stamp, nonce, "/r", request.body),
        v2_signature(old, stamp, nonce, "/r", request.body),
    ]
    for secret in (new, old):
        Webhook(secret).verify(
            request.body, {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        )


async def test_a_failed_attempt_is_retried_later(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, sessions: Sessions
) -> None:
    receiver.default = Reply(status=500, body=b"x" * 5000)
    mutation_id = await accepted(client, tenant, [{"value": "f"}], callbackUrl=receiver.url())
    delivery = await wait_for(lambda: _attempted(sessions, tenant, mutation_id))
    assert delivery.status == "pending" and delivery.last_status_code == 500
    assert delivery.next_attempt_at is not None and delivery.last_attempt_at is not None
    delay = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
    assert 0.8 * RETRY_SCHEDULE[0] <= delay <= 1.2 * RETRY_SCHEDULE[0]
    assert delivery.response_excerpt is not None and len(delivery.response_excerpt) <= 1024
    state = await _callback_state(client, tenant, mutation_id, "pending")
    assert state is not None and state["attempts"] == 1 and state["lastStatusCode"] == 500


async def _attempted(sessions: Sessions, tenant: Tenant, mutation_id: str) -> CallbackDelivery | None:
    delivery = await delivery_of(sessions, tenant, mutation_id)
    return delivery if delivery is not None and delivery.attempts >= 1 else None


async def test_410_stops_at_once_and_redirects_are_not_followed(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, sessions: Sessions
) -> None:
    receiver.replies = [Reply(status=410)]
    gone = await accepted(client, tenant, [{"value": "g"}], callbackUrl=receiver.url("/gone"))
    await wait_for(lambda: _callback_state(client, tenant, gone, "failed"))
    receiver.default = Reply(status=302, headers={"location": receiver.url("/elsewhere")})
    moved = await accepted(client, tenant, [{"value": "m"}], callbackUrl=receiver.url("/moved"))
    delivery = await wait_for(lambda: _attempted(sessions, tenant, moved))
    assert delivery.status == "pending" and delivery.last_status_code == 302
    assert [r.path for r in receiver.requests] == ["/gone", "/moved"]


async def test_retry_after_is_honoured(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, sessions: Sessions
) -> None:
    receiver.default = Reply(status=503, headers={"retry-after": "120"})
    mutation_id = await accepted(client, tenant, [{"value": "ra"}], callbackUrl=receiver.url())
    delivery = await wait_for(lambda: _attempted(sessions, tenant, mutation_id))
    assert delivery.next_attempt_at is not None and delivery.last_attempt_at is not None
    assert (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds() >= 120


def test_the_retry_schedule_with_an_injected_clock() -> None:
    start = datetime(2026, 3, 24, 10, 0, tzinfo=UTC)
    failure = Outcome(500, "HTTP 500")
    waits = []
    for attempts in range(1, len(RETRY_SCHEDULE) + 2):
        later = next_attempt(attempts, failure, start, jitter=lambda: 1.0)
        waits.append(None if later is None else (later - start).total_seconds())
    assert waits == [10, 60, 300, 1800, 7200, 21600, 43200, 86400, None]
    jittered = next_attempt(1, failure, start, jitter=lambda: 1.2)
    assert jittered == start + timedelta(seconds=12)
    assert next_attempt(1, Outcome(410, "HTTP 410"), start, jitter=lambda: 1.0) is None
    throttled = next_attempt(1, Outcome(429, "HTTP 429", retry_after=3600), start, jitter=lambda: 1.0)
    assert throttled == start + timedelta(seconds=3600)


async def test_a_silent_receiver_does_not_slow_mutations(
    client: httpx.AsyncClient, make_tenant: Any, receiver: Receiver
) -> None:
    tenant: Tenant = await make_tenant()
    receiver.default = Reply(delay=12)
    ids = [await accepted(client, tenant, [{"value": str(n)}], callbackUrl=receiver.url()) for n in range(10)]
    for mutation_id in ids:
        assert (await final(client, tenant, mutation_id, within=10))["status"] == "succeeded"
    assert all(r.answered_at is None for r in receiver.requests), "mutations waited for the receiver"


async def test_unsafe_callback_urls_are_refused_before_anything_is_queued(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1:8080/x",
        "http://[::1]:8080/x",
        "http://127.0.0.1:22/x",
        "http://user:pw@127.0.0.1:8080/x",
        "/relative",
        "ftp://127.0.0.1:2121/x",
    ):
        response = await client.post(
            "/api/v2/test-records",
            json=[{"value": "u"}],
            params={"callbackUrl": url},
            headers=tenant.headers(),
        )
        assert_error(response, 422, "url_not_allowed")
    listed = await client.get("/api/v2/mutations", headers=tenant.headers())
    assert listed.json()["data"] == []


async def test_the_dispatcher_gives_up_after_the_last_retry(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    app: Any,
    write_sessions: Sessions,
    sessions: Sessions,
) -> None:
    """Driven by a dispatcher with an injected clock far ahead, so the running ones leave it alone."""
    from onderwijsregio.engine.callbacks import CallbackDispatcher

    receiver.default = Reply(status=500)
    mutation_id = await accepted(client, tenant, [{"value": "d"}], callbackUrl=receiver.url())
    first = await wait_for(lambda: _attempted(sessions, tenant, mutation_id))
    later = datetime.now(UTC) + timedelta(days=3650)
    engine = app.state.context.engine
    dispatcher = CallbackDispatcher(
        write_sessions,
        engine.callbacks_waker,
        engine.box,
        engine.policy,
        clock=lambda: later,
        jitter=lambda: 1.0,
    )
    for attempt in range(2, len(RETRY_SCHEDULE) + 2):
        await dispatcher.deliver(Scope(tenant.id, False), first.id)
        delivery = await delivery_of(sessions, tenant, mutation_id)
        assert delivery is not None and delivery.attempts == attempt
        if attempt <= len(RETRY_SCHEDULE):
            assert delivery.status == "pending"
            assert delivery.next_attempt_at == later + timedelta(seconds=RETRY_SCHEDULE[attempt - 1])
    final_state = await delivery_of(sessions, tenant, mutation_id)
    assert final_state is not None
    assert final_state.status == "failed" and final_state.next_attempt_at is None
    assert len(receiver.requests) == len(RETRY_SCHEDULE) + 1
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1  # the same id on every attempt
