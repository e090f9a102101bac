"""The Mutation Engine seen from outside (contract §2, §2.2, §2.3): acceptance, order, outcomes."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.app import make_context
from onderwijsregio.config import Settings
from onderwijsregio.engine.models import CallbackDelivery, Mutation
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.webhooks.models import WebhookMessage
from tests.conftest import Tenant
from tests.engine_helpers import accepted, effects, final, submit, until_processing
from tests.receiver import Receiver
from tests.test_envelope import assert_error

Sessions = async_sessionmaker[AsyncSession]


async def test_a_write_is_accepted_with_202_and_applied(
    client: httpx.AsyncClient, tenant: Tenant, sessions: Sessions
) -> None:
    response = await submit(client, tenant, [{"value": "Geheim-Markerwaard"}, {"value": "b"}])
    assert response.status_code == 202
    data = response.json()["data"]
    assert data["status"] == "queued" and data["operation"] == "test.record" and data["resourceIds"] == []
    assert response.headers["location"] == data["statusUrl"] == f"/api/v2/mutations/{data['mutationId']}"
    assert response.headers["retry-after"] == "1"
    mutation = await final(client, tenant, data["mutationId"])
    assert mutation["status"] == "succeeded"
    assert mutation["attempts"] >= 1
    assert mutation["createdAt"] <= mutation["startedAt"] <= mutation["completedAt"]
    assert (mutation["succeededCount"], mutation["failedCount"]) == (2, 0)
    assert mutation["results"] == [
        {
            "index": 0,
            "status": "succeeded",
            "resourceType": "record",
            "resourceId": "rec_Geheim-Markerwaard",
            "action": "created",
        },
        {
            "index": 1,
            "status": "succeeded",
            "resourceType": "record",
            "resourceId": "rec_b",
            "action": "created",
        },
    ]
    assert mutation["callback"] == {
        "status": "none",
        "attempts": 0,
        "lastStatusCode": None,
        "lastAttemptAt": None,
    }
    rows = await effects(sessions, tenant.id)
    assert [(r.value, r.prepared) for r in rows] == [
        ("Geheim-Markerwaard", "prepared:Geheim-Markerwaard"),
        ("b", "prepared:b"),
    ]
    read = await client.get(f"/api/v2/mutations/{data['mutationId']}", headers=tenant.headers())
    assert "Geheim" not in read.text.replace("rec_Geheim-Markerwaard", "")  # the payload is never shown


async def test_mutations_apply_in_acceptance_order(
    client: httpx.AsyncClient, make_tenant: Any, sessions: Sessions
) -> None:
    """200 mutations of one region, 4 workers (the test settings): applied in the order they were accepted."""
    tenant: Tenant = await make_tenant(
        rateLimit={"keyRequestsPerSecond": 1000, "keyBurst": 2000, "requestsPerSecond": 1000, "burst": 2000}
    )
    ids = [await accepted(client, tenant, [{"value": str(n)}]) for n in range(200)]
    await final(client, tenant, ids[-1])
    rows = await effects(sessions, tenant.id)
    assert [r.value for r in rows] == [str(n) for n in range(200)]
    assert [r.change_seq for r in rows] == list(range(1, 201))


async def test_regions_progress_side_by_side(client: httpx.AsyncClient, make_tenant: Any) -> None:
    """A long queue in one region does not hold back another region's single write."""
    limits = {"keyRequestsPerSecond": 1000, "keyBurst": 2000, "requestsPerSecond": 1000, "burst": 2000}
    busy: Tenant = await make_tenant(rateLimit=limits)
    calm: Tenant = await make_tenant()
    busy_writes = [accepted(client, busy, [{"value": str(n), "prepareSeconds": 0.3}]) for n in range(150)]
    busy_ids = await asyncio.gather(*busy_writes)  # about 6 s of work, one batch after another
    calm_id = await accepted(client, calm, [{"value": "alone"}])
    await final(client, calm, calm_id)
    busy_states = [
        (await client.get(f"/api/v2/mutations/{mutation_id}", headers=busy.headers())).json()["data"][
            "status"
        ]
        for mutation_id in busy_ids
    ]
    assert busy_states.count("queued") >= 50, "the calm region waited for the busy one"
    for mutation_id in busy_ids:
        await final(client, busy, mutation_id, within=60)


async def test_failed_items_are_reported_and_the_rest_applied(
    client: httpx.AsyncClient, tenant: Tenant, sessions: Sessions
) -> None:
    items: list[dict[str, Any]] = [
        {"value": "ok1"},
        {"value": "no", "fail": "permanent"},
        {"value": "bug", "fail": "crash"},
        {"value": "np", "prepareFails": True},
        {"value": "ok2"},
    ]
    mutation = await final(client, tenant, await accepted(client, tenant, items))
    assert mutation["status"] == "failed"
    assert (mutation["succeededCount"], mutation["failedCount"]) == (2, 3)
    errors = {r["index"]: r.get("error", {}).get("code") for r in mutation["results"]}
    assert errors == {0: None, 1: "test_refused", 2: "internal_error", 3: "prepare_failed", 4: None}
    assert [r.value for r in await effects(sessions, tenant.id)] == ["ok1", "ok2"]


@pytest.mark.parametrize("failure", ["permanent", "crash"])
async def test_an_item_failing_after_others_undoes_only_itself(
    client: httpx.AsyncClient, tenant: Tenant, sessions: Sessions, failure: str
) -> None:
    """The items of a mutation are first tried together; one failing late sends them through one by
    one, and the result is as if they had gone one by one from the start."""
    items: list[dict[str, Any]] = [
        {"value": "a", "index": 0},
        {"value": "b", "index": 1},
        {"value": "x", "index": 2, "fail": failure},
        {"value": "c", "index": 3},
    ]
    mutation = await final(client, tenant, await accepted(client, tenant, items))
    assert (mutation["succeededCount"], mutation["failedCount"]) == (3, 1)
    assert [r["status"] for r in mutation["results"]] == ["succeeded", "succeeded", "failed", "succeeded"]
    applied = await effects(sessions, tenant.id)
    assert [r.value for r in applied] == ["a", "b", "c"]
    sequence = [r.change_seq for r in applied]
    # in order, and without a gap: the numbers taken by the items tried together were given back
    assert sequence == [1, 2, 3]


async def test_mutations_applied_together_end_as_if_applied_alone(
    client: httpx.AsyncClient, tenant: Tenant, sessions: Sessions
) -> None:
    """Consecutive mutations of an operation with independent items are applied as one group; one
    failing item sends its group through one by one. Either way every mutation, item, change number
    and event ends as if each had been applied alone, in acceptance order."""
    blocker = await accepted(client, tenant, [{"value": "first", "prepareSeconds": 1}])
    await until_processing(client, tenant, blocker)  # the rest wait, and are then claimed as one batch
    queued: list[tuple[list[dict[str, Any]], str]] = [
        ([{"value": "a"}, {"value": "b"}], "true"),  # a group that fails in its third mutation
        ([{"value": "c"}], "true"),
        ([{"value": "d"}, {"value": "x", "fail": "permanent"}], "true"),
        ([{"value": "e"}], "false"),  # an ordinary mutation ends a group
        ([{"value": "f"}], "true"),  # a group that succeeds as one
        ([{"value": "g"}, {"value": "h"}], "true"),
        ([{"value": "i"}], "true"),
    ]
    ids = [await accepted(client, tenant, items, together=flag) for items, flag in queued]
    outcomes = [await final(client, tenant, mutation_id) for mutation_id in [blocker, *ids]]
    assert [o["status"] for o in outcomes] == ["succeeded"] * 3 + ["failed"] + ["succeeded"] * 4
    assert [r["status"] for r in outcomes[3]["results"]] == ["succeeded", "failed"]
    assert outcomes[3]["results"][1]["error"]["code"] == "test_refused"
    applied = await effects(sessions, tenant.id)
    assert [r.value for r in applied] == ["first", "a", "b", "c", "d", "e", "f", "g", "h", "i"]
    # sorted by it, each its own, and no number lost to the group that was undone
    assert [r.change_seq for r in applied] == list(range(1, len(applied) + 1))
    order = [blocker, *ids]
    assert [order.index(r.mutation_id) for r in applied] == [0, 1, 1, 2, 3, 4, 5, 6, 6, 7]
    answer = await client.get("/api/v2/events", params={"pageSize": 100}, headers=tenant.headers())
    told = [(e["type"], e["data"]["mutationId"]) for e in answer.json()["data"]]
    assert told == [(f"mutation.{o['status']}", o["id"]) for o in outcomes]
    # The failed group went one by one within its batch: nothing was rolled back and claimed again.
    async with sessions() as session:
        attempts = await session.scalars(
            scoped(select(Mutation.attempts), Mutation, Scope(tenant.id, False)).where(Mutation.id.in_(ids))
        )
        assert set(attempts) == {1}


async def test_a_transient_failure_is_retried_in_its_place(
    client: httpx.AsyncClient, tenant: Tenant, sessions: Sessions
) -> None:
    first = await accepted(client, tenant, [{"value": "first", "transientTimes": 2}])
    second = await accepted(client, tenant, [{"value": "second"}])
    assert (await final(client, tenant, second))["status"] == "succeeded"
    assert (await final(client, tenant, first))["status"] == "succeeded"
    assert [r.value for r in await effects(sessions, tenant.id)] == ["first", "second"]


async def test_a_lasting_transient_failure_fails_the_head_and_the_lane_moves_on(
    client: httpx.AsyncClient, tenant: Tenant, sessions: Sessions
) -> None:
    """With the stall limit (10 minutes; 3 s in these tests) past, the head fails; the next applies."""
    stuck = await accepted(client, tenant, [{"value": "stuck", "transientTimes": 1000}])
    after = await accepted(client, tenant, [{"value": "after"}])
    head = await final(client, tenant, stuck, within=30)
    assert head["status"] == "failed"
    assert head["results"][0]["error"]["code"] == "transient_error"
    assert (await final(client, tenant, after))["status"] == "succeeded"
    assert [r.value for r in await effects(sessions, tenant.id)] == ["after"]


async def test_a_lasting_failure_deep_in_a_batch_fails_only_its_own_mutation(
    client: httpx.AsyncClient, tenant: Tenant, sessions: Sessions
) -> None:
    """The batch retries one mutation at a time after trouble, so only the culprit fails."""
    ids = [
        await accepted(client, tenant, [{"value": "one", "prepareSeconds": 0.3}]),
        await accepted(client, tenant, [{"value": "two"}]),
        await accepted(client, tenant, [{"value": "three", "transientTimes": 1000}]),
        await accepted(client, tenant, [{"value": "four"}]),
    ]
    statuses = [(await final(client, tenant, mutation_id, within=30))["status"] for mutation_id in ids]
    assert statuses == ["succeeded", "succeeded", "failed", "succeeded"]
    assert [r.value for r in await effects(sessions, tenant.id)] == ["one", "two", "four"]


async def test_a_crashing_prepare_fails_its_item_only(client: httpx.AsyncClient, tenant: Tenant) -> None:
    mutation = await final(
        client, tenant, await accepted(client, tenant, [{"value": "a", "prepareCrash": True}, {"value": "b"}])
    )
    assert [r["status"] for r in mutation["results"]] == ["failed", "succeeded"]
    assert mutation["results"][0]["error"]["code"] == "internal_error"


async def test_a_queued_mutation_can_be_canceled_once(
    client: httpx.AsyncClient, tenant: Tenant, sessions: Sessions
) -> None:
    blocker = await accepted(client, tenant, [{"value": "slow", "prepareSeconds": 2}])
    await until_processing(client, tenant, blocker)  # its batch is claimed: the next one waits alone
    waiting = await accepted(client, tenant, [{"value": "never"}])
    canceled = await client.post(f"/api/v2/mutations/{waiting}/cancel", headers=tenant.headers())
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["data"]["status"] == "canceled"
    assert_error(
        await client.post(f"/api/v2/mutations/{waiting}/cancel", headers=tenant.headers()), 409, "conflict"
    )
    assert (await final(client, tenant, blocker))["status"] == "succeeded"
    assert_error(
        await client.post(f"/api/v2/mutations/{blocker}/cancel", headers=tenant.headers()), 409, "conflict"
    )
    assert (await final(client, tenant, waiting))["status"] == "canceled"
    assert [r.value for r in await effects(sessions, tenant.id)] == ["slow"]


async def test_cancel_needs_write_and_list_filters(client: httpx.AsyncClient, tenant: Tenant) -> None:
    reader = await client.post(
        "/api/v2/api-keys", json={"name": "r", "permissions": ["read"]}, headers=tenant.headers()
    )
    read_only = {"x-api-key": reader.json()["data"]["key"]}
    done = await accepted(client, tenant, [{"value": "x"}])
    failed = await accepted(client, tenant, [{"value": "y", "fail": "permanent"}])
    await final(client, tenant, failed)
    assert_error(await client.post(f"/api/v2/mutations/{done}/cancel", headers=read_only), 403, "forbidden")
    listed = await client.get(
        "/api/v2/mutations", params={"status": "failed", "pageSize": 100}, headers=read_only
    )
    assert [m["id"] for m in listed.json()["data"]] == [failed]
    by_operation = await client.get(
        "/api/v2/mutations", params={"operation": "test.record"}, headers=read_only
    )
    assert {m["id"] for m in by_operation.json()["data"]} == {done, failed}
    assert_error(
        await client.get("/api/v2/mutations", params={"status": "lost"}, headers=read_only),
        400,
        "bad_request",
    )


async def test_mutations_are_confined_to_their_region_and_mode(
    client: httpx.AsyncClient, make_tenant: Any
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    live = await accepted(client, owner, [{"value": "live"}])
    sandbox = await client.post("/api/sandbox/test-records", json=[{"value": "sb"}], headers=owner.headers())
    sandbox_id = sandbox.json()["data"]["mutationId"]
    assert sandbox.headers["location"] == f"/api/sandbox/mutations/{sandbox_id}"
    await final(client, owner, sandbox_id, sandbox=True)
    for path in (f"/api/v2/mutations/{live}", f"/api/v2/mutations/{live}/cancel"):
        method = "POST" if path.endswith("cancel") else "GET"
        assert_error(await client.request(method, path, headers=other.headers()), 404, "not_found")
    assert_error(
        await client.get(f"/api/v2/mutations/{sandbox_id}", headers=owner.headers()), 404, "not_found"
    )
    assert_error(
        await client.get(f"/api/sandbox/mutations/{live}", headers=owner.headers()), 404, "not_found"
    )
    assert (await client.get("/api/v2/mutations", headers=other.headers())).json()["data"] == []
    assert_error(
        await client.get("/api/v2/mutations/not-a-mutation", headers=owner.headers()), 404, "not_found"
    )


async def test_a_full_queue_refuses_writes_of_that_region_only(
    client: httpx.AsyncClient, make_tenant: Any
) -> None:
    full: Tenant = await make_tenant(maxQueuedMutations=3)
    other: Tenant = await make_tenant(maxQueuedMutations=3)
    for n in range(4):  # with 3 unfinished (not more than the limit) one more is still taken
        await accepted(client, full, [{"value": f"slow{n}", "prepareSeconds": 1}])
    refused = await submit(client, full, [{"value": "one too many"}], idempotencyKey="kept-for-later")
    assert_error(refused, 429, "queue_full")
    assert int(refused.headers["retry-after"]) > 0
    # the refused request did not use up its key
    listed = await client.get("/api/v2/mutations", headers=full.headers())
    assert all(m["idempotencyKey"] != "kept-for-later" for m in listed.json()["data"])
    assert (await submit(client, other, [{"value": "fine"}])).status_code == 202


async def test_sandbox_reset_wipes_earlier_sandbox_mutations_only(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    sandbox_write = await client.post(
        "/api/sandbox/test-records", json=[{"value": "s"}], headers=tenant.headers()
    )
    sandbox_id = sandbox_write.json()["data"]["mutationId"]
    live_id = await accepted(client, tenant, [{"value": "l"}])
    await final(client, tenant, sandbox_id, sandbox=True)
    reset = await client.post("/api/v2/sandbox/reset", headers=tenant.headers())  # sent in live mode
    assert reset.status_code == 202
    reset_id = reset.json()["data"]["mutationId"]
    assert reset.json()["data"]["operation"] == "sandbox.reset"
    assert reset.json()["data"]["resourceIds"] == []
    assert reset.headers["location"] == f"/api/sandbox/mutations/{reset_id}"
    assert reset.json()["meta"]["sandboxEnabled"] is True
    assert (await final(client, tenant, reset_id, sandbox=True))["status"] == "succeeded"
    assert_error(
        await client.get(f"/api/sandbox/mutations/{sandbox_id}", headers=tenant.headers()), 404, "not_found"
    )
    assert (await final(client, tenant, live_id))["status"] == "succeeded"


async def test_a_reset_wipes_what_the_mutations_before_it_in_its_batch_queued(
    client: httpx.AsyncClient, tenant: Tenant, sessions: Sessions
) -> None:
    """Sandbox writes and a reset applied in one batch: the writes' callback rows and webhook messages,
    written in the same transaction just before the reset, go with the rest of the sandbox."""
    hook = {"url": "https://127.0.0.1:8443/hook", "events": ["mutation.succeeded"]}
    created = await client.post("/api/sandbox/webhooks", json=hook, headers=tenant.headers())
    assert created.status_code == 201, created.text
    sandbox_writes = "/api/sandbox/test-records"
    receiver = Receiver()
    try:

        async def write(item: dict[str, Any]) -> str:
            answer = await client.post(
                sandbox_writes, json=[item], params={"callbackUrl": receiver.url()}, headers=tenant.headers()
            )
            assert answer.status_code == 202, answer.text
            mutation_id: str = answer.json()["data"]["mutationId"]
            return mutation_id

        blocker = await write({"value": "first", "prepareSeconds": 1})
        await until_processing(client, tenant, blocker, sandbox=True)  # the rest become one batch
        writes = [await write({"value": f"w{n}"}) for n in range(3)]
        reset = await client.post("/api/sandbox/sandbox/reset", headers=tenant.headers())
        reset_id = reset.json()["data"]["mutationId"]
        assert (await final(client, tenant, reset_id, sandbox=True))["status"] == "succeeded"
    finally:
        receiver.close()
    for mutation_id in writes:
        gone = await client.get(f"/api/sandbox/mutations/{mutation_id}", headers=tenant.headers())
        assert_error(gone, 404, "not_found")
    sandbox = Scope(tenant.id, True)
    async with sessions() as session:
        deliveries = await session.scalars(scoped(select(CallbackDelivery), CallbackDelivery, sandbox))
        messages = await session.scalars(scoped(select(WebhookMessage), WebhookMessage, sandbox))
        assert [d.mutation_id for d in deliveries] == []
        assert [m.id for m in messages] == []


async def test_sandbox_reset_needs_manage(client: httpx.AsyncClient, tenant: Tenant) -> None:
    writer = await client.post(
        "/api/v2/api-keys", json={"name": "w", "permissions": ["write"]}, headers=tenant.headers()
    )
    response = await client.post(
        "/api/sandbox/sandbox/reset", headers={"x-api-key": writer.json()["data"]["key"]}
    )
    assert_error(response, 403, "forbidden")


async def test_many_writes_at_once_are_all_kept(
    client: httpx.AsyncClient, make_tenant: Any, sessions: Sessions
) -> None:
    limits = {"keyRequestsPerSecond": 1000, "keyBurst": 2000, "requestsPerSecond": 1000, "burst": 2000}
    tenant: Tenant = await make_tenant(rateLimit=limits)
    answers = await asyncio.gather(*(submit(client, tenant, [{"value": str(n)}]) for n in range(60)))
    assert [a.status_code for a in answers] == [202] * 60
    ids = [a.json()["data"]["mutationId"] for a in answers]
    for mutation_id in ids:
        assert (await final(client, tenant, mutation_id))["status"] == "succeeded"
    applied = [r.mutation_id for r in await effects(sessions, tenant.id)]  # in change order
    assert sorted(applied) == sorted(ids)
    async with sessions() as session:
        seqs = dict(
            (
                await session.execute(
                    scoped(select(Mutation.id, Mutation.seq), Mutation, Scope(tenant.id, False))
                )
            ).all()
        )
    assert [seqs[m] for m in applied] == sorted(seqs[m] for m in applied), "applied out of acceptance order"


async def test_a_task_that_will_not_stop_does_not_block_shutdown(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping waits a bounded time, then names the task that hangs and where (a diagnostic)."""

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(3)  # finishes what it does first, long past the stop's patience

    context = make_context(settings)
    try:
        context.engine.start(1, [stubborn])
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="onderwijsregio.engine.runtime"):
            await context.engine.stop(within=0.5)
        assert time.monotonic() - started < 10
        [line] = [r.getMessage() for r in caplog.records if "did not stop" in r.getMessage()]
        assert "stubborn" in line
    finally:
        await asyncio.sleep(3)  # the stubborn task ends by itself
        await context.database.dispose()
