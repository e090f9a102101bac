"""Candidate verification and sessions (contract §3.5): codes, tokens, self-service, mail, CORS."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.app import create_app
from onderwijsregio.config import Settings
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.sessions.apply import forget_finished_sessions
from onderwijsregio.sessions.models import CandidateSession, VerificationCode
from onderwijsregio.storage.files import LocalFileStore
from tests.conftest import Tenant
from tests.engine_helpers import accepted, final, until_processing
from tests.live import environment, fresh_database, run_cli, serve
from tests.smtp import SmtpServer
from tests.test_candidates import create, person
from tests.test_envelope import assert_error

SANDBOX, LIVE = "/api/sandbox", "/api/v2"
SESSION = "/auth/candidates/session"


@dataclass
class FakeClock:
    """The time the app sees; tests move it on."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


ROOMY = {"requestsPerSecond": 1000, "burst": 1000, "keyRequestsPerSecond": 1000, "keyBurst": 1000}


@pytest.fixture
async def tenant(make_tenant: Any) -> Tenant:
    """A region whose rate limits stay out of these tests' way."""
    roomy: Tenant = await make_tenant(rateLimit=ROOMY)
    return roomy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def timed(settings: Settings, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database whose session rules run on `clock`."""
    app = create_app(settings, run_workers=False, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def email() -> str:
    return f"kandidaat-{uuid.uuid4().hex[:10]}@example.org"


async def sandbox_code(http: httpx.AsyncClient, tenant: Tenant, address: str) -> str:
    answer = await http.post(
        f"{SANDBOX}/auth/candidates/verification", json={"email": address}, headers=tenant.headers()
    )
    assert answer.status_code == 202, answer.text
    code: str = answer.json()["data"]["sandboxCode"]
    assert re.fullmatch(r"\d{6}", code)
    return code


async def open_session(http: httpx.AsyncClient, tenant: Tenant, address: str, code: str) -> httpx.Response:
    return await http.post(
        f"{SANDBOX}/auth/candidates/sessions", json={"email": address, "code": code}, headers=tenant.headers()
    )


async def token_for(http: httpx.AsyncClient, tenant: Tenant, address: str) -> str:
    opened = await open_session(http, tenant, address, await sandbox_code(http, tenant, address))
    assert opened.status_code == 201, opened.text
    token: str = opened.json()["data"]["sessionToken"]
    return token


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **extra}


async def sandbox_candidate(client: httpx.AsyncClient, tenant: Tenant, **changes: Any) -> tuple[str, str]:
    address = email()
    [cid] = await create(client, tenant, person(email=address, **changes), prefix=SANDBOX)
    return cid, address


async def test_a_code_opens_one_session(
    client: httpx.AsyncClient, tenant: Tenant, timed: httpx.AsyncClient, clock: FakeClock
) -> None:
    cid, address = await sandbox_candidate(client, tenant)
    code = await sandbox_code(timed, tenant, address)
    opened = await open_session(timed, tenant, address.upper(), code)  # addresses match case-insensitively
    assert opened.status_code == 201, opened.text
    data = opened.json()["data"]
    assert set(data) == {"sessionToken", "expiresAt", "idleExpiresAt"}
    assert data["sessionToken"].startswith("ocs_") and len(data["sessionToken"]) >= 4 + 43  # 256 bits
    assert data["expiresAt"] == (clock.now + timedelta(hours=24)).isoformat().replace("+00:00", ".000Z")
    assert data["idleExpiresAt"] == (clock.now + timedelta(minutes=30)).isoformat().replace("+00:00", ".000Z")
    # single use
    assert_error(await open_session(timed, tenant, address, code), 401, "unauthorized")
    session = await timed.get(f"{SANDBOX}{SESSION}", headers=bearer(data["sessionToken"]))
    assert session.status_code == 200, session.text
    assert session.json()["data"]["email"] == address and [
        c["id"] for c in session.json()["data"]["candidates"]
    ] == [cid]


async def test_every_wrong_case_gets_the_same_401(
    client: httpx.AsyncClient, tenant: Tenant, timed: httpx.AsyncClient, clock: FakeClock
) -> None:
    _, address = await sandbox_candidate(client, tenant)
    bodies = []

    async def refused(address_: str, code: str) -> None:
        answer = await open_session(timed, tenant, address_, code)
        assert_error(answer, 401, "unauthorized")
        bodies.append({k: v for k, v in answer.json().items() if k != "meta"})

    code = await sandbox_code(timed, tenant, address)
    await refused(address, f"{(int(code) + 1) % 1_000_000:06d}")  # wrong
    await refused(address, "12345")  # malformed
    await refused(email(), code)  # unknown address
    clock.advance(minutes=10, seconds=1)
    await refused(address, code)  # expired
    code = await sandbox_code(timed, tenant, address)
    for _ in range(5):
        await refused(address, f"{(int(code) + 1) % 1_000_000:06d}")
    await refused(address, code)  # dead after 5 wrong tries, even the right one
    assert all(body == bodies[0] for body in bodies)
    # a new code replaces the old one
    first = await sandbox_code(timed, tenant, address)
    second = await sandbox_code(timed, tenant, address)
    if first != second:
        await refused(address, first)
    assert (await open_session(timed, tenant, address, second)).status_code == 201


async def test_a_session_lives_24_hours_and_30_idle_minutes(
    client: httpx.AsyncClient, tenant: Tenant, timed: httpx.AsyncClient, clock: FakeClock
) -> None:
    _, address = await sandbox_candidate(client, tenant)
    token = await token_for(timed, tenant, address)
    for _ in range(60):  # used every 29 minutes: alive until its 24 hours are over
        clock.advance(minutes=29)
        if clock.now >= datetime.fromisoformat((await _session(timed, token))["expiresAt"]) - timedelta(
            minutes=29
        ):
            break
    clock.advance(minutes=29)
    assert_error(await timed.get(f"{SANDBOX}{SESSION}", headers=bearer(token)), 401, "unauthorized")
    idle = await token_for(timed, tenant, address)
    clock.advance(minutes=29, seconds=59)
    assert (await timed.get(f"{SANDBOX}{SESSION}", headers=bearer(idle))).status_code == 200
    clock.advance(minutes=30)
    assert_error(await timed.get(f"{SANDBOX}{SESSION}", headers=bearer(idle)), 401, "unauthorized")


async def _session(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    answer = await http.get(f"{SANDBOX}{SESSION}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


async def test_a_new_session_ends_older_ones_but_a_code_request_ends_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    _, address = await sandbox_candidate(client, tenant)
    older = await token_for(client, tenant, address)
    for _ in range(3):
        await sandbox_code(client, tenant, address)
    assert (await client.get(f"{SANDBOX}{SESSION}", headers=bearer(older))).status_code == 200
    newer = await token_for(client, tenant, address)
    assert_error(await client.get(f"{SANDBOX}{SESSION}", headers=bearer(older)), 401, "unauthorized")
    assert (await client.get(f"{SANDBOX}{SESSION}", headers=bearer(newer))).status_code == 200
    assert (await client.delete(f"{SANDBOX}{SESSION}", headers=bearer(newer))).status_code == 200
    assert_error(await client.get(f"{SANDBOX}{SESSION}", headers=bearer(newer)), 401, "unauthorized")


async def test_tokens_and_keys_each_work_only_where_they_belong(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    cid, address = await sandbox_candidate(client, tenant)
    token = await token_for(client, tenant, address)
    assert_error(await client.get(f"{SANDBOX}{SESSION}", headers=tenant.headers()), 401, "unauthorized")
    for path in (f"/candidates/{cid}", "/candidates", "/schema"):
        assert_error(await client.get(f"{SANDBOX}{path}", headers=bearer(token)), 401, "unauthorized")
    assert_error(
        await client.get(f"{LIVE}{SESSION}", headers=bearer(token)), 401, "unauthorized"
    )  # a sandbox session
    for garbage in ("ocs_not-a-real-token", "", "x" * 500):
        assert_error(await client.get(f"{SANDBOX}{SESSION}", headers=bearer(garbage)), 401, "unauthorized")


async def test_self_service_changes_only_the_allowed_fields_of_ones_own_records(
    client: httpx.AsyncClient, tenant: Tenant, admin_key: str
) -> None:
    cid, address = await sandbox_candidate(client, tenant, motivation="Eerst")
    other, _ = await sandbox_candidate(client, tenant)
    token = await token_for(client, tenant, address)
    accepted = await client.patch(
        f"{SANDBOX}{SESSION}/candidates/{cid}", json={"motivation": "Zelf aangepast"}, headers=bearer(token)
    )
    assert accepted.status_code == 202, accepted.text
    data = accepted.json()["data"]
    assert data["operation"] == "candidates.self_update"
    assert (
        accepted.headers["location"]
        == data["statusUrl"]
        == f"{SANDBOX}{SESSION}/mutations/{data['mutationId']}"
    )
    own = await client.get(data["statusUrl"], headers=bearer(token))
    assert own.status_code == 200 and own.json()["data"]["id"] == data["mutationId"]
    assert (await final(client, tenant, data["mutationId"], sandbox=True))["status"] == "succeeded"
    read = await client.get(f"{SANDBOX}/candidates/{cid}", headers=tenant.headers())
    assert read.json()["data"]["motivation"] == "Zelf aangepast"
    error = assert_error(
        await client.patch(
            f"{SANDBOX}{SESSION}/candidates/{cid}", json={"name": "Iemand Anders"}, headers=bearer(token)
        ),
        422,
        "validation_failed",
    )
    assert "not_self_service" in str(error["issues"])
    assert_error(
        await client.patch(
            f"{SANDBOX}{SESSION}/candidates/{cid}", json={"motivation": 5}, headers=bearer(token)
        ),
        422,
        "validation_failed",
    )
    assert_error(
        await client.patch(
            f"{SANDBOX}{SESSION}/candidates/{cid}",
            params={"callbackUrl": "https://example.org/hook"},
            json={"motivation": "x"},
            headers=bearer(token),
        ),
        400,
        "bad_request",
    )
    for path in (f"{SESSION}/candidates/{other}", f"{SESSION}/candidates/cand_01ZZZZZZZZZZZZZZZZZZZZZZZZ"):
        assert_error(
            await client.patch(f"{SANDBOX}{path}", json={"motivation": "x"}, headers=bearer(token)),
            404,
            "not_found",
        )
    # the session sees only its own mutations
    foreign = await client.post(f"{SANDBOX}/candidates", json=person(), headers=tenant.headers())
    assert_error(
        await client.get(
            f"{SANDBOX}{SESSION}/mutations/{foreign.json()['data']['mutationId']}", headers=bearer(token)
        ),
        404,
        "not_found",
    )
    # the region decides what is open
    opened = await client.patch(
        f"{LIVE}/regions/{tenant.id}", json={"selfServiceFields": ["city"]}, headers={"x-api-key": admin_key}
    )
    assert opened.status_code == 200, opened.text
    assert_error(
        await client.patch(
            f"{SANDBOX}{SESSION}/candidates/{cid}", json={"motivation": "x"}, headers=bearer(token)
        ),
        422,
        "validation_failed",
    )
    city = await client.patch(
        f"{SANDBOX}{SESSION}/candidates/{cid}", json={"city": "Ede"}, headers=bearer(token)
    )
    assert city.status_code == 202, city.text


async def test_erasure_ends_the_session_and_its_codes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    cid, address = await sandbox_candidate(client, tenant)
    token = await token_for(client, tenant, address)
    code = await sandbox_code(client, tenant, address)
    erased = await client.delete(f"{SANDBOX}{SESSION}/candidates/{cid}", headers=bearer(token))
    assert erased.status_code == 202, erased.text
    assert erased.json()["data"]["operation"] == "candidates.self_delete"
    assert (await final(client, tenant, erased.json()["data"]["mutationId"], sandbox=True))[
        "status"
    ] == "succeeded"
    assert_error(await client.get(f"{SANDBOX}/candidates/{cid}", headers=tenant.headers()), 404, "not_found")
    assert_error(await client.get(f"{SANDBOX}{SESSION}", headers=bearer(token)), 401, "unauthorized")
    assert_error(await open_session(client, tenant, address, code), 401, "unauthorized")


async def test_the_sandbox_reset_ends_sessions(client: httpx.AsyncClient, tenant: Tenant) -> None:
    _, address = await sandbox_candidate(client, tenant)
    token = await token_for(client, tenant, address)
    reset = await client.post(f"{SANDBOX}/sandbox/reset", headers=tenant.headers())
    assert (await final(client, tenant, reset.json()["data"]["mutationId"], sandbox=True))[
        "status"
    ] == "succeeded"
    assert_error(await client.get(f"{SANDBOX}{SESSION}", headers=bearer(token)), 401, "unauthorized")


def _comparable(answer: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    """Status, body shape and headers, minus what may differ: request ids and rate-limit values."""
    body = answer.json()
    body["meta"].pop("requestId")
    headers = {
        name: value
        for name, value in answer.headers.items()
        if name not in ("x-request-id", "ratelimit-remaining", "ratelimit-reset", "date")
    }
    return answer.status_code, body, headers


async def test_known_and_unknown_addresses_get_identical_answers_and_only_known_ones_mail(
    client: httpx.AsyncClient, make_tenant: Any, smtp_server: SmtpServer
) -> None:
    tenant: Tenant = await make_tenant(
        name="Regio Zuid",
        rateLimit={"requestsPerSecond": 1000, "burst": 1000, "keyRequestsPerSecond": 1000, "keyBurst": 1000},
    )
    known = [email() for _ in range(100)]
    await create(client, tenant, *[person(email=a) for a in known[:10]])
    for chunk in range(10, 100, 10):
        await create(client, tenant, *[person(email=a) for a in known[chunk : chunk + 10]])
    unknown = [email() for _ in range(100)]
    answers: dict[str, list[Any]] = {"known": [], "unknown": []}
    for kind, addresses in (("known", known), ("unknown", unknown)):
        for address in addresses:
            answer = await client.post(
                f"{LIVE}/auth/candidates/verification", json={"email": address}, headers=tenant.headers()
            )
            answers[kind].append(_comparable(answer))
    first = answers["known"][0]
    assert first[0] == 202 and "sandboxCode" not in first[1]["data"]
    assert all(a == first for a in answers["known"] + answers["unknown"])
    mail = await smtp_server.inbox.wait_for(known[-1])
    assert "Regio Zuid" in mail["Subject"]
    text_part, html_part = mail.get_body(("plain",)), mail.get_body(("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    code = re.search(r"\b(\d{6})\b", text)
    assert code and code.group(1) in html and "verificatiecode" in text and "verification code" in text
    for address in known:
        await smtp_server.inbox.wait_for(address)
    assert not any(smtp_server.inbox.to(address) for address in unknown)
    opened = await client.post(
        f"{LIVE}/auth/candidates/sessions",
        json={"email": known[-1], "code": code.group(1)},
        headers=tenant.headers(),
    )
    assert opened.status_code == 201, opened.text


async def test_over_the_limits_the_answer_is_the_same_and_no_mail_goes(
    client: httpx.AsyncClient, tenant: Tenant, smtp_server: SmtpServer
) -> None:
    address = email()
    await create(client, tenant, person(email=address))
    answers = []
    for _ in range(7):
        answer = await client.post(
            f"{LIVE}/auth/candidates/verification", json={"email": address}, headers=tenant.headers()
        )
        answers.append(_comparable(answer)[:2])
    assert all(a == answers[0] for a in answers) and answers[0][0] == 202
    await smtp_server.inbox.wait_for(address)
    await asyncio.sleep(1.0)  # the sender has had time for every request it got
    assert len(smtp_server.inbox.to(address)) == 5  # 5 per address per hour


async def test_cors_answers_only_the_regions_origins(client: httpx.AsyncClient, make_tenant: Any) -> None:
    origin = "https://werkenin.example.nl"
    tenant: Tenant = await make_tenant(allowedOrigins=[origin], rateLimit=ROOMY)
    _, address = await sandbox_candidate(client, tenant)
    token = await token_for(client, tenant, address)
    allowed = await client.get(f"{SANDBOX}{SESSION}", headers=bearer(token, origin=origin))
    assert allowed.headers["access-control-allow-origin"] == origin and "Origin" in allowed.headers["vary"]
    other = await client.get(f"{SANDBOX}{SESSION}", headers=bearer(token, origin="https://evil.example"))
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    preflight = await client.options(
        f"{SANDBOX}{SESSION}", headers={"origin": origin, "access-control-request-method": "PATCH"}
    )
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == origin
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    refused = await client.options(
        f"{SANDBOX}{SESSION}",
        headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
    )
    assert "access-control-allow-origin" not in refused.headers
    keyed = await client.get(f"{SANDBOX}/candidates", headers=tenant.headers(origin=origin))
    assert "access-control-allow-origin" not in keyed.headers  # key routes are not for browsers


async def test_mail_does_not_wait_behind_the_mutation_queue(
    client: httpx.AsyncClient, tenant: Tenant, smtp_server: SmtpServer
) -> None:
    address = email()
    await create(client, tenant, person(email=address))
    blocker = await accepted(client, tenant, [{"value": "slow", "prepareSeconds": 4}])
    await until_processing(client, tenant, blocker)
    queued_behind = await accepted(client, tenant, [{"value": "after"}])
    await client.post(
        f"{LIVE}/auth/candidates/verification", json={"email": address}, headers=tenant.headers()
    )
    await smtp_server.inbox.wait_for(address, within=3)
    behind = await client.get(f"{LIVE}/mutations/{queued_behind}", headers=tenant.headers())
    assert behind.json()["data"]["status"] == "queued", "the mail should have come before the queue moved on"
    await final(client, tenant, blocker)


async def test_without_smtp_the_mail_goes_to_the_log_with_the_code_masked(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as database:
        env = environment(database)
        _region, key = run_cli(["admin", "create-region", "--name", "log"], tmp_path, env).stdout.splitlines()
        address = email()
        with serve(tmp_path, env) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                created = await http.post(
                    f"{LIVE}/candidates", json=person(email=address), headers={"x-api-key": key}
                )
                assert created.status_code == 202, created.text
                for _ in range(100):
                    mutation = await http.get(created.headers["location"], headers={"x-api-key": key})
                    if mutation.json()["data"]["status"] == "succeeded":
                        break
                    await asyncio.sleep(0.05)
                asked = await http.post(
                    f"{LIVE}/auth/candidates/verification",
                    json={"email": address},
                    headers={"x-api-key": key},
                )
                assert asked.status_code == 202
                for _ in range(100):
                    if "code ******" in server.log():
                        break
                    await asyncio.sleep(0.05)
            log = server.log()
    assert "verification mail (no SMTP server configured): code ******" in log
    assert address not in log and address.split("@")[0] not in log
    assert not re.search(r"code \d{6}", log)


async def test_finished_sessions_and_spent_codes_are_removed(
    client: httpx.AsyncClient,
    tenant: Tenant,
    write_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    """They hold e-mail addresses: the hourly clean-up removes them once they can no longer be used."""
    _, address = await sandbox_candidate(client, tenant)
    token = await token_for(client, tenant, address)  # its code is spent now
    live = await token_for(client, tenant, address)  # ends the first session
    await client.delete(f"{SANDBOX}{SESSION}", headers=bearer(live))
    assert await _rows_of(write_sessions, tenant, address) == (2, 2)
    await forget_finished_sessions(write_sessions, LocalFileStore(tmp_path))
    assert await _rows_of(write_sessions, tenant, address) == (0, 0)
    assert_error(await client.get(f"{SANDBOX}{SESSION}", headers=bearer(token)), 401, "unauthorized")


async def _rows_of(
    sessions: async_sessionmaker[AsyncSession], tenant: Tenant, address: str
) -> tuple[int, int]:
    scope = Scope(tenant.id, True)
    async with sessions() as session:
        found = await session.scalars(
            scoped(select(CandidateSession.id), CandidateSession, scope).where(
                CandidateSession.email_key == address
            )
        )
        codes = await session.scalars(
            scoped(select(VerificationCode.id), VerificationCode, scope).where(
                VerificationCode.email_key == address
            )
        )
        return len(found.all()), len(codes.all())
