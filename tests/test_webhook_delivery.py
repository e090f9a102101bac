"""Webhook delivery (contract §3.7): events reach subscribed endpoints at least once, signed with the
endpoint's own secret in both schemes, logged per attempt, redeliverable; failing endpoints are
disabled; a dead one slows nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook

from onderwijsregio.webhooks.delivery import WebhookDispatcher
from tests.conftest import Tenant
from tests.live import environment, fresh_database, run_cli, serve
from tests.receiver import Receiver, Reply
from tests.test_callbacks import v2_signature, wait_for
from tests.test_candidates import create, person

API, SANDBOX = "/api/v2", "/api/sandbox"
SIGNED = ("webhook-id", "webhook-timestamp", "webhook-signature")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


async def subscribe(
    client: httpx.AsyncClient, tenant: Tenant, url: str, events: list[str], prefix: str = API
) -> dict[str, Any]:
    created = await client.post(
        f"{prefix}/webhooks", json={"url": url, "events": events}, headers=tenant.headers()
    )
    assert created.status_code == 201, created.text
    endpoint: dict[str, Any] = created.json()["data"]
    return endpoint


def posts(receiver: Receiver, path: str) -> list[Any]:
    return [r for r in receiver.requests if r.method == "POST" and r.path == path]


async def test_events_reach_subscribed_endpoints_signed_both_ways(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    path = "/hooks/a?token=t"
    endpoint = await subscribe(client, tenant, receiver.url(path), ["candidate.created"])
    [cid] = await create(client, tenant, person())
    [request] = await wait_for(lambda: _async(posts(receiver, path)))
    event = json.loads(request.body)
    assert (
        event["type"] == "candidate.created"
        and event["data"]["candidateId"] == cid
        and event["sandbox"] is False
    )
    feed = (await client.get(f"{API}/events", headers=tenant.headers())).json()["data"]
    assert event == next(e for e in feed if e["type"] == "candidate.created")
    headers = request.headers
    assert headers["webhook-id"] == event["id"]
    Webhook(endpoint["secret"]).verify(request.body, {k: headers[k] for k in SIGNED})
    expected = v2_signature(
        endpoint["secret"],
        headers["x-mutationengine-timestamp"],
        headers["x-mutationengine-nonce"],
        path,
        request.body,
    )
    assert headers["x-mutationengine-signature"] == expected
    await asyncio.sleep(0.5)
    assert len(posts(receiver, path)) == 1  # mutation.succeeded was not subscribed to
    log = await _deliveries(client, tenant, endpoint["id"])
    assert [(d["eventId"], d["type"], d["statusCode"], d["error"]) for d in log] == [
        (event["id"], "candidate.created", 200, None)
    ]
    assert log[0]["id"].startswith("dlv_") and log[0]["durationMs"] >= 0


async def _async(value: Any) -> Any:
    return value


async def _deliveries(
    client: httpx.AsyncClient, tenant: Tenant, endpoint_id: str, prefix: str = API
) -> list[dict[str, Any]]:
    answer = await client.get(f"{prefix}/webhooks/{endpoint_id}/deliveries", headers=tenant.headers())
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


async def test_test_events_redelivery_and_rotation(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = await subscribe(client, tenant, receiver.url("/t"), ["candidate.deleted"])
    tested = await client.post(f"{API}/webhooks/{endpoint['id']}/test", headers=tenant.headers())
    assert tested.status_code == 202, tested.text
    [first] = await wait_for(lambda: _async(posts(receiver, "/t")))
    assert json.loads(first.body)["type"] == "webhook.test"
    # The attempt is recorded once the receiver's answer is in, a moment after the receiver saw it.
    [attempt] = await wait_for(lambda: _deliveries(client, tenant, endpoint["id"]))
    rotated = (
        await client.post(f"{API}/webhooks/{endpoint['id']}/rotate-secret", headers=tenant.headers())
    ).json()
    again = await client.post(
        f"{API}/webhooks/{endpoint['id']}/deliveries/{attempt['id']}/redeliver", headers=tenant.headers()
    )
    assert again.status_code == 202, again.text
    await wait_for(lambda: _async(len(posts(receiver, "/t")) == 2))
    second = posts(receiver, "/t")[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"] == tested.json()["data"]["eventId"]
    assert second.body == first.body
    for secret in (endpoint["secret"], rotated["data"]["secret"]):  # both sign during the overlap
        Webhook(secret).verify(second.body, {k: second.headers[k] for k in SIGNED})
    assert len(second.headers["webhook-signature"].split()) == 2
    missing = await client.post(
        f"{API}/webhooks/{endpoint['id']}/deliveries/dlv_01ZZZZZZZZZZZZZZZZZZZZZZZZ/redeliver",
        headers=tenant.headers(),
    )
    assert missing.status_code == 404


async def test_the_sandbox_reset_clears_deliveries_but_keeps_endpoints(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = await subscribe(client, tenant, receiver.url("/s"), ["candidate.created"], prefix=SANDBOX)
    await create(client, tenant, person(), prefix=SANDBOX)
    await wait_for(lambda: _async(posts(receiver, "/s")))
    recorded = await wait_for(lambda: _deliveries(client, tenant, endpoint["id"], SANDBOX))
    assert len(recorded) == 1
    reset = await client.post(f"{SANDBOX}/sandbox/reset", headers=tenant.headers())
    await wait_for(lambda: _reset_done(client, tenant, reset.json()["data"]["mutationId"]))
    assert await _deliveries(client, tenant, endpoint["id"], SANDBOX) == []
    assert (
        await client.get(f"{SANDBOX}/webhooks/{endpoint['id']}", headers=tenant.headers())
    ).status_code == 200


async def _reset_done(client: httpx.AsyncClient, tenant: Tenant, mutation_id: str) -> bool:
    answer = await client.get(f"{SANDBOX}/mutations/{mutation_id}", headers=tenant.headers())
    return bool(answer.json()["data"]["status"] == "succeeded")


async def test_an_endpoint_answering_410_is_disabled(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.default = Reply(410)
    endpoint = await subscribe(client, tenant, receiver.url("/gone"), ["candidate.created"])
    await create(client, tenant, person())

    async def disabled() -> Any:
        data = (await client.get(f"{API}/webhooks/{endpoint['id']}", headers=tenant.headers())).json()["data"]
        return data if not data["enabled"] else None

    state = await wait_for(disabled)
    assert state["disabledReason"] == "The endpoint answered 410 Gone"
    await create(client, tenant, person())
    await asyncio.sleep(0.5)
    assert len(posts(receiver, "/gone")) == 1  # a disabled endpoint gets nothing more


async def test_an_endpoint_failing_for_three_days_is_disabled(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, write_sessions: Any
) -> None:
    """Driven by a dispatcher of its own on a clock the test moves (the app's own may make some of the
    real-time attempts; either way every attempt fails)."""
    receiver.default = Reply(500)
    endpoint = await subscribe(client, tenant, receiver.url("/down"), ["webhook.test"])
    context = app.state.context
    now = [context.clock()]
    dispatcher = WebhookDispatcher(
        write_sessions,
        context.engine.callbacks_waker,
        context.engine.box,
        context.url_policy,
        lambda: now[0],
        lambda: 1.0,
    )
    for _ in range(12):  # events keep coming (each message's own retries end after about 45 h)
        await client.post(f"{API}/webhooks/{endpoint['id']}/test", headers=tenant.headers())
        for claimed in await dispatcher.claim():
            await dispatcher.deliver_claimed(claimed)
        now[0] += timedelta(hours=8)
    state = (await client.get(f"{API}/webhooks/{endpoint['id']}", headers=tenant.headers())).json()["data"]
    assert state["enabled"] is False and state["disabledReason"] == "Every delivery failed for 3 days"


async def test_a_silent_endpoint_slows_neither_mutations_nor_other_endpoints(
    client: httpx.AsyncClient, make_tenant: Any, receiver: Receiver
) -> None:
    tenant: Tenant = await make_tenant()
    silent, healthy = Receiver(), receiver
    silent.default = Reply(delay=12)
    try:
        await subscribe(client, tenant, silent.url("/silent"), ["candidate.created"])
        await subscribe(client, tenant, healthy.url("/healthy"), ["candidate.created"])
        created = [await create(client, tenant, person()) for _ in range(6)]
        await wait_for(lambda: _async(len(posts(healthy, "/healthy")) == 6), within=10)
        assert len(created) == 6
        assert all(r.answered_at is None for r in silent.requests), "the silent endpoint answered after all"
    finally:
        silent.close()


async def test_deliveries_survive_killed_servers_with_their_webhook_ids(tmp_path: Path) -> None:
    """Three kills (SIGKILL) of the server delivering 200 events: each still arrives, at least once,
    with the id it has in the feed."""
    receiver = Receiver()
    receiver.default = Reply(delay=0.02)
    try:
        with fresh_database(tmp_path) as database:
            env = environment(
                database, ONDERWIJSREGIO_ALLOW_HTTP_URLS="true", ONDERWIJSREGIO_URL_ALLOWLIST="127.0.0.1"
            )
            region_id, key = run_cli(
                ["admin", "create-region", "--name", "kill"], tmp_path, env
            ).stdout.splitlines()
            admin = run_cli(["admin", "create-key", "--name", "ops"], tmp_path, env).stdout.split()[-1]
            headers = {"x-api-key": key}
            expected = await _deliver_through_kills(tmp_path, env, headers, admin, region_id, receiver)
        arrived = {r.headers["webhook-id"] for r in receiver.requests if r.path == "/kill"}
        assert len(expected) == 200 and expected <= arrived
        for request in receiver.requests:
            assert json.loads(request.body)["id"] == request.headers["webhook-id"]
    finally:
        receiver.close()


async def _deliver_through_kills(
    workdir: Path,
    env: dict[str, str],
    headers: dict[str, str],
    admin: str,
    region_id: str,
    receiver: Receiver,
) -> set[str]:
    """Kills the server after about 50, 100 and 150 deliveries; a fourth one finishes the work."""
    for kill in range(3):
        with serve(workdir, env) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                if kill == 0:
                    await _prepare_region(http, headers, admin, region_id, receiver)
                target = 50 * (kill + 1)
                await _until_received(receiver, lambda ids, at_least=target: len(ids) >= at_least)
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()
        assert len(_received(receiver)) < 200, "all delivered before a kill; nothing was tested"
    with serve(workdir, env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            events = await _all_created_events(http, headers)
            await _until_received(receiver, events.issubset, within=120)
    return events


async def _all_created_events(http: httpx.AsyncClient, headers: dict[str, str]) -> set[str]:
    """The feed's 200 creations; a batch a killed worker held is applied again once its lane's lease
    (30 s) runs out, so the feed may need that long to hold them all."""
    deadline = time.monotonic() + 90
    while len(events := await _feed(http, headers)) < 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    return events


async def _prepare_region(
    http: httpx.AsyncClient, headers: dict[str, str], admin: str, region_id: str, receiver: Receiver
) -> None:
    limits = {"requestsPerSecond": 1000, "burst": 1000, "keyRequestsPerSecond": 1000, "keyBurst": 1000}
    raised = await http.patch(
        f"{API}/regions/{region_id}", json={"rateLimit": limits}, headers={"x-api-key": admin}
    )
    assert raised.status_code == 200, raised.text
    hook = await http.post(
        f"{API}/webhooks",
        json={"url": receiver.url("/kill"), "events": ["candidate.created"]},
        headers=headers,
    )
    assert hook.status_code == 201, hook.text
    for _ in range(20):
        batch = [person() for _ in range(10)]
        created = await http.post(f"{API}/candidates", json=batch, headers=headers)
        assert created.status_code == 202, created.text


def _received(receiver: Receiver) -> set[str]:
    return {r.headers["webhook-id"] for r in receiver.requests}


async def _until_received(receiver: Receiver, enough: Any, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not enough(_received(receiver)):
        assert time.monotonic() < deadline, f"only {len(_received(receiver))} events arrived"
        await asyncio.sleep(0.05)


async def _feed(http: httpx.AsyncClient, headers: dict[str, str]) -> set[str]:
    ids: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"pageSize": 100, **({"cursor": cursor} if cursor else {})}
        page = (await http.get(f"{API}/events", params=params, headers=headers)).json()
        ids |= {e["id"] for e in page["data"] if e["type"] == "candidate.created"}
        cursor = page["meta"]["cursor"]
        if cursor is None:
            return ids
