"""Prometheus metrics (docs/operations.md): who may scrape, what a scrape shows, what it never shows."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from onderwijsregio.app import api_routes, create_app
from onderwijsregio.auth.dependencies import MetricsAccess, route_access
from onderwijsregio.config import Settings
from tests.conftest import Tenant
from tests.engine_helpers import accepted, final, until_processing
from tests.live import COMMAND, environment, free_port, fresh_database, run_cli
from tests.log_scan import SCAN
from tests.receiver import Receiver, Reply
from tests.test_callbacks import wait_for
from tests.test_candidates import create, person
from tests.test_envelope import assert_error
from tests.test_webhook_delivery import subscribe

TOKEN = "metrics-token-for-tests-0123456789"
CANDIDATE_ROUTE = "/api/v2/candidates/{candidateId}"


@pytest.fixture(scope="module")
async def scraper(app: FastAPI, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database whose /metrics opens to TOKEN. It runs no workers: the
    session app's do the work, and counters belong to the process, which both apps share."""
    configured = settings.model_copy(update={"metrics_token": TOKEN})
    second = create_app(configured, run_workers=False)
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


async def scrape(scraper: httpx.AsyncClient) -> str:
    answer = await scraper.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    return answer.text


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name` with exactly these labels; 0 when it is not there (yet)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def requests_timed(text: str, method: str, route: str, status: str) -> float:
    name = "onderwijsregio_http_request_duration_seconds_count"
    return value(text, name, method=method, route=route, status=status)


async def test_metrics_do_not_exist_without_a_token(client: httpx.AsyncClient) -> None:
    answer = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert_error(answer, 404, "not_found")
    unknown = await client.get("/no-such-route")
    assert answer.json()["message"] == unknown.json()["message"]  # as if there were no such route


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer wrong-token-wrong-token-0000", f"Basic {TOKEN}", f"Bearer {TOKEN}x"],
)
async def test_metrics_need_the_token(scraper: httpx.AsyncClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    assert_error(await scraper.get("/metrics", headers=headers), 401, "unauthorized")


async def test_metrics_with_the_token(scraper: httpx.AsyncClient) -> None:
    answer = await scraper.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    assert answer.headers["cache-control"] == "no-store"
    assert value(answer.text, "onderwijsregio_queue_query_ok") == 1
    assert "process_resident_memory_bytes" in answer.text


def test_metrics_declare_their_access_and_stay_out_of_the_reference(app: FastAPI) -> None:
    [route] = [r for r in api_routes(app) if r.path == "/metrics"]
    assert isinstance(route_access(route), MetricsAccess)
    assert "/metrics" not in app.openapi()["paths"]


async def test_a_request_is_timed_under_its_route_template(
    client: httpx.AsyncClient, tenant: Tenant, scraper: httpx.AsyncClient
) -> None:
    missing = "cand_01JQ3A7ZZZZZZZZZZZZZZZZZZZ"
    before = await scrape(scraper)
    for prefix in ("/api/v2", "/api/sandbox"):  # one template for both modes
        answer = await client.get(f"{prefix}/candidates/{missing}", headers=tenant.headers())
        assert answer.status_code == 404
    unknown = await client.get(f"/api/v2/nothing-here/{missing}")
    assert unknown.status_code == 404
    after = await scrape(scraper)
    timed = requests_timed(after, "GET", CANDIDATE_ROUTE, "404") - requests_timed(
        before, "GET", CANDIDATE_ROUTE, "404"
    )
    assert timed == 2
    unmatched = [requests_timed(text, "GET", "unmatched", "404") for text in (before, after)]
    assert unmatched[1] > unmatched[0]
    assert missing not in after and "nothing-here" not in after


async def test_queue_depth_and_age_per_region(
    client: httpx.AsyncClient, make_tenant: Any, scraper: httpx.AsyncClient
) -> None:
    busy, idle = await make_tenant(), await make_tenant()
    await final(client, idle, await accepted(client, idle, [{"value": "done"}]))
    blocker = await accepted(client, busy, [{"value": "slow", "prepareSeconds": 2}])
    await until_processing(client, busy, blocker)  # its lane is held: the next ones wait behind it
    waiting = [await accepted(client, busy, [{"value": f"w{n}"}]) for n in range(3)]
    text = await scrape(scraper)
    live = {"sandbox": "false"}
    assert value(text, "onderwijsregio_queue_depth", region_id=busy.id, **live) == 4
    assert value(text, "onderwijsregio_queue_oldest_age_seconds", region_id=busy.id, **live) > 0
    assert value(text, "onderwijsregio_queue_depth", region_id=idle.id, **live) == 0
    assert value(text, "onderwijsregio_queue_oldest_age_seconds", region_id=idle.id, **live) == 0
    applied = value(text, "onderwijsregio_mutations_applied_total", outcome="succeeded")
    for mutation_id in [blocker, *waiting]:
        assert (await final(client, busy, mutation_id))["status"] == "succeeded"
    text = await scrape(scraper)
    assert value(text, "onderwijsregio_queue_depth", region_id=busy.id, **live) == 0
    assert value(text, "onderwijsregio_mutations_applied_total", outcome="succeeded") >= applied + 4


async def test_a_batch_applied_again_after_a_failed_item_is_counted(
    client: httpx.AsyncClient, tenant: Tenant, scraper: httpx.AsyncClient
) -> None:
    name = "onderwijsregio_batches_applied_again_total"
    before = value(await scrape(scraper), name)
    clean = await accepted(client, tenant, [{"value": "ok"}])
    assert (await final(client, tenant, clean))["status"] == "succeeded"
    assert value(await scrape(scraper), name) == before  # nothing failed: applied once
    failing = await accepted(client, tenant, [{"value": "ok"}, {"value": "no", "fail": "permanent"}])
    assert (await final(client, tenant, failing))["failedCount"] == 1
    assert value(await scrape(scraper), name) == before + 1


async def test_failed_callbacks_are_counted(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, scraper: httpx.AsyncClient
) -> None:
    name = "onderwijsregio_callback_delivery_failures_total"
    before = value(await scrape(scraper), name, final="false")
    receiver.default = Reply(500)
    mutation_id = await accepted(client, tenant, [{"value": "v"}], callbackUrl=receiver.url("/cb"))
    await final(client, tenant, mutation_id)

    async def attempted() -> bool:
        view = await client.get(f"/api/v2/mutations/{mutation_id}", headers=tenant.headers())
        return bool(view.json()["data"]["callback"]["attempts"] >= 1)

    await wait_for(attempted)
    assert value(await scrape(scraper), name, final="false") >= before + 1


async def test_failed_webhooks_are_counted(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, scraper: httpx.AsyncClient
) -> None:
    name = "onderwijsregio_webhook_delivery_failures_total"
    before = value(await scrape(scraper), name, final="false")
    receiver.default = Reply(500)
    endpoint = await subscribe(client, tenant, receiver.url("/wh"), ["candidate.created"])
    await create(client, tenant, person())

    async def attempted() -> bool:
        log = await client.get(f"/api/v2/webhooks/{endpoint['id']}/deliveries", headers=tenant.headers())
        return bool(log.json()["data"])

    await wait_for(attempted)
    assert value(await scrape(scraper), name, final="false") >= before + 1


async def test_metrics_hold_no_personal_data_or_keys(
    client: httpx.AsyncClient, tenant: Tenant, scraper: httpx.AsyncClient
) -> None:
    people = [person(name="Marieke van Oosterhout", phone="+31612345678") for _ in range(3)]
    ids = await create(client, tenant, *people)
    for candidate_id in ids:
        answer = await client.get(f"/api/v2/candidates/{candidate_id}", headers=tenant.headers())
        assert answer.status_code == 200
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:  # let the events and deliveries of the creation settle
        await asyncio.sleep(0.2)
        text = await scrape(scraper)
    assert requests_timed(text, "GET", CANDIDATE_ROUTE, "200") >= 3
    forbidden = [p["email"] for p in people] + ["Marieke", "Oosterhout", "612345678", tenant.key, *ids]
    assert [word for word in forbidden if word in text] == []


def test_a_standalone_worker_serves_its_metrics(tmp_path: Path) -> None:
    port = free_port()
    with fresh_database(tmp_path) as database:
        env = environment(database, ONDERWIJSREGIO_METRICS_TOKEN=TOKEN)
        assert run_cli(["migrate"], tmp_path, env).returncode == 0
        log_path = tmp_path / "worker.log"
        SCAN.files.append(log_path)
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [*COMMAND, "worker", "--metrics-port", str(port)],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            answer = _first_answer(url, {"authorization": f"Bearer {TOKEN}"})
            assert answer.status_code == 200, answer.text
            assert value(answer.text, "onderwijsregio_queue_query_ok") == 1
            assert_error(httpx.get(url), 401, "unauthorized")
            assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 404  # only /metrics
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0, log_path.read_text()


def _first_answer(url: str, headers: dict[str, str]) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, headers=headers, timeout=2)
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the worker never served /metrics"
            time.sleep(0.1)
