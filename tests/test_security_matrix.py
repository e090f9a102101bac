"""Security matrices generated from the app's own route table, so a new route is covered at once:

1. tenant isolation: another region's ids (and live ids in sandbox mode, and back) are simply not
   found — 404 in the envelope, nothing queued, the owner's resources unchanged (§1, §1.2, §3);
2. function level: every credential kind on every route gets the contract's status (§1.2);
3. no mass assignment: read-only and unknown properties in any request body → 422 (§3.2).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.api_keys import service as api_key_service
from onderwijsregio.api_keys import tokens
from onderwijsregio.app import api_routes
from onderwijsregio.auth.dependencies import (
    AdminAccess,
    PublicAccess,
    RegionAccess,
    SessionAccess,
    route_access,
)
from tests.conftest import Tenant
from tests.receiver import Receiver
from tests.security_helpers import (
    ADMIN_ID_PARAMS,
    API,
    REGION_ID_PARAMS,
    ROOMY,
    SANDBOX,
    SESSION_ID_PARAMS,
    BodyContext,
    build_holdings,
    fill,
    id_params,
    region_key,
    resource_snapshot,
    table_counts,
    template,
    valid_body,
)
from tests.test_envelope import assert_error
from tests.test_routes import TEST_WRITES
from tests.test_sessions import bearer, sandbox_candidate, sandbox_code, token_for

SESSION_PREFIX = "/auth/candidates/session"


@dataclass
class World:
    """Regions A and B, each with resources of every kind in live and sandbox mode, and sessions."""

    http: httpx.AsyncClient
    admin: str
    a: Tenant
    b: Tenant
    holdings: dict[tuple[str, str], dict[str, str]]  # (region label, prefix) → ids by parameter name
    webhook_url: str
    session_a: str  # a sandbox session of a candidate of A
    session_b: str  # a sandbox session of a candidate of B
    own_a: dict[str, str]  # session A's own candidate and a mutation it created
    foreign_for_a: dict[str, str]  # same region, not session A's: another candidate, a key's mutation

    sessions: async_sessionmaker[AsyncSession]

    def tenant(self, label: str) -> Tenant:
        return self.a if label == "A" else self.b

    async def new_admin(self) -> str:
        """A fresh admin key: admin keys have the default key rate limit, which a matrix would exhaust."""
        async with self.sessions() as session, session.begin():
            _key, secret = await api_key_service.create_admin_key(session, "security matrix")
        return secret


@pytest.fixture(scope="module")
async def world(app: FastAPI, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[World]:
    async with sessions() as session, session.begin():
        _key, admin = await api_key_service.create_admin_key(session, "security matrix")
    receiver = Receiver()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        a, b = await _region(http, admin, "Regio A"), await _region(http, admin, "Regio B")
        url = receiver.url("/matrix-hooks")
        holdings = {}
        for label, tenant in (("A", a), ("B", b)):
            key_id = (await region_key(http, tenant, f"{label} extra"))["id"]
            for prefix in (API, SANDBOX):
                holdings[label, prefix] = await build_holdings(http, tenant, prefix, url, key_id)
        own_candidate, address = await sandbox_candidate(http, a)
        session_a = await token_for(http, a, address)
        patched = await http.patch(
            f"{SANDBOX}{SESSION_PREFIX}/candidates/{own_candidate}",
            json={"phone": "0612345678"},
            headers=bearer(session_a),
        )
        assert patched.status_code == 202, patched.text
        _candidate_b, address_b = await sandbox_candidate(http, b)
        yield World(
            http=http,
            admin=admin,
            a=a,
            b=b,
            holdings=holdings,
            webhook_url=url,
            session_a=session_a,
            session_b=await token_for(http, b, address_b),
            own_a={"candidateId": own_candidate, "mutationId": patched.json()["data"]["mutationId"]},
            foreign_for_a={
                "candidateId": holdings["A", SANDBOX]["candidateId"],
                "mutationId": holdings["A", SANDBOX]["mutationId"],
            },
            sessions=sessions,
        )
    receiver.close()


async def _region(http: httpx.AsyncClient, admin: str, name: str) -> Tenant:
    created = await http.post(
        f"{API}/regions", json={"name": name, "rateLimit": ROOMY}, headers={"x-api-key": admin}
    )
    assert created.status_code == 201, created.text
    region = created.json()["data"]
    key = await http.post(
        f"{API}/api-keys", json={"name": "matrix"}, headers={"x-api-key": admin, "x-region-id": region["id"]}
    )
    assert key.status_code == 201, key.text
    return Tenant(region, key.json()["data"]["key"], key.json()["data"])


def routes_with(app: FastAPI, kind: type) -> list[APIRoute]:
    return [r for r in api_routes(app) if r.path.startswith(API) and isinstance(route_access(r), kind)]


def with_prefix(prefix: str, path_template: str) -> str:
    return f"{prefix}{path_template}"


def envelope_without_meta(response: httpx.Response) -> dict[str, Any]:
    return {k: v for k, v in response.json().items() if k != "meta"}


# --- 0. every id route is in one of the matrices ---------------------------------------------------


def test_every_route_with_an_id_is_covered_by_an_id_factory(app: FastAPI) -> None:
    uncovered = []
    for route in api_routes(app):
        params = set(id_params(route))
        access = route_access(route)
        covered = {
            RegionAccess: REGION_ID_PARAMS,
            SessionAccess: SESSION_ID_PARAMS,
            AdminAccess: ADMIN_ID_PARAMS,
        }.get(type(access), set())
        if params - covered:
            uncovered.append(f"{sorted(route.methods or ())} {route.path}: {sorted(params - covered)}")
    assert not uncovered, f"routes with ids no factory makes (extend tests/security_helpers.py): {uncovered}"
    region_id_routes = [r for r in routes_with(app, RegionAccess) if id_params(r)]
    assert len(region_id_routes) >= 20, "the route table looks truncated"


# --- 1. tenant isolation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    method: str
    url: str
    body: Any
    label: str


def isolation_probes(
    app: FastAPI,
    foreign: dict[str, str],
    own: dict[str, str],
    prefix: str,
    context: BodyContext,
    *,
    include_platform: bool,
) -> list[Probe]:
    """Every (region route with an id × method), once for each way of mixing in foreign ids."""
    probes = []
    for route in routes_with(app, RegionAccess):
        params = id_params(route)
        access = route_access(route)
        assert isinstance(access, RegionAccess)
        if not params or (access.platform and not include_platform):
            continue
        missing = set(params) - foreign.keys()
        assert not missing, f"{route.path}: no resource of A for {missing}"
        for method in sorted(route.methods or ()):
            for count in range(1, len(params) + 1):
                for chosen in itertools.combinations(params, count):
                    ids = {p: (foreign if p in chosen else own)[p] for p in params}
                    url = with_prefix(prefix, fill(template(route), ids))
                    label = f"{method} {route.path} foreign={list(chosen)}"
                    probes.append(Probe(method, url, valid_body(route, method, context), label))
    return probes


async def assert_isolated(
    world: World,
    sessions: async_sessionmaker[AsyncSession],
    caller: Tenant,
    probes: list[Probe],
    owner: tuple[str, str],
    extra_headers: dict[str, str],
) -> int:
    """Each probe → 404 in the envelope; nothing queued or counted differently; the owner's data intact."""
    owner_tenant, owner_prefix = world.tenant(owner[0]), owner[1]
    owner_ids = world.holdings[owner]
    regions = [world.a.id, world.b.id]
    before = await resource_snapshot(world.http, owner_tenant, owner_prefix, owner_ids)
    counts = await table_counts(sessions, regions)
    wrong = []
    for probe in probes:
        answer = await world.http.request(
            probe.method, probe.url, json=probe.body, headers=caller.headers(**extra_headers)
        )
        try:
            assert_error(answer, 404, "not_found")
        except AssertionError:
            wrong.append(f"{probe.label} → {answer.status_code} {answer.text[:200]}")
            continue
        now = await table_counts(sessions, regions)
        if now != counts:
            changed = {k: (counts[k], now[k]) for k in now if now[k] != counts[k]}
            wrong.append(f"{probe.label} → 404 but rows changed {changed}")
            counts = now
    assert not wrong, "tenant isolation broken:\n" + "\n".join(wrong)
    assert await resource_snapshot(world.http, owner_tenant, owner_prefix, owner_ids) == before
    return len(probes)


async def test_another_regions_ids_are_not_found_on_every_route(
    app: FastAPI, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    context = BodyContext(world.webhook_url)
    checked = 0
    for prefix in (API, SANDBOX):
        probes = isolation_probes(
            app,
            world.holdings["A", prefix],
            world.holdings["B", prefix],
            prefix,
            context,
            include_platform=True,
        )
        checked += await assert_isolated(world, sessions, world.b, probes, ("A", prefix), {})
    assert checked >= 2 * 27  # 25 route × method pairs, redelivery mixes its two ids 3 ways


async def test_live_and_sandbox_ids_do_not_cross(
    app: FastAPI, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Same region, same key: a live id from sandbox mode (prefix or header) and back is not found.
    API keys are platform configuration, the same in both modes, so their routes are left out."""
    context = BodyContext(world.webhook_url)
    live, sandbox = world.holdings["A", API], world.holdings["A", SANDBOX]
    for prefix, headers in ((SANDBOX, {}), (API, {"x-api-sandbox": "true"})):
        probes = isolation_probes(app, live, sandbox, prefix, context, include_platform=False)
        await assert_isolated(world, sessions, world.a, probes, ("A", API), headers)
    probes = isolation_probes(app, sandbox, live, API, context, include_platform=False)
    await assert_isolated(world, sessions, world.a, probes, ("A", SANDBOX), {})


async def test_a_session_reaches_only_its_own_candidates_and_mutations(
    app: FastAPI, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Session B with A's ids, and session A with ids of its region that are not its own → 404."""
    routes = [r for r in routes_with(app, SessionAccess) if id_params(r)]
    assert len(routes) >= 3
    for params in map(id_params, routes):
        assert set(params) <= SESSION_ID_PARAMS, params
    session_a_ids = world.own_a
    cases = [
        (world.session_b, session_a_ids, "session B, A's session-own ids"),
        (world.session_b, world.foreign_for_a, "session B, A's key ids"),
        (world.session_a, world.foreign_for_a, "session A, its region's ids that are not its own"),
    ]
    context = BodyContext(world.webhook_url)
    regions = [world.a.id, world.b.id]
    before = await world.http.get(
        f"{SANDBOX}/candidates/{session_a_ids['candidateId']}", headers=world.a.headers()
    )
    counts = await table_counts(sessions, regions)
    wrong = []
    for token, ids, label in cases:
        for route in routes:
            for method in sorted(route.methods or ()):
                url = with_prefix(SANDBOX, fill(template(route), ids))
                body = valid_body(route, method, context)
                answer = await world.http.request(method, url, json=body, headers=bearer(token))
                if answer.status_code != 404 or answer.json().get("error", {}).get("code") != "not_found":
                    wrong.append(f"{label}: {method} {route.path} → {answer.status_code} {answer.text[:200]}")
    assert not wrong, "session isolation broken:\n" + "\n".join(wrong)
    assert await table_counts(sessions, regions) == counts
    after = await world.http.get(
        f"{SANDBOX}/candidates/{session_a_ids['candidateId']}", headers=world.a.headers()
    )
    assert after.json()["data"] == before.json()["data"]
    # the positive control: the session's own ids do work, so the 404s above are about ownership
    own = await world.http.get(
        f"{SANDBOX}{SESSION_PREFIX}/mutations/{session_a_ids['mutationId']}", headers=bearer(world.session_a)
    )
    assert own.status_code == 200, own.text


async def test_a_sandbox_session_is_no_credential_in_live_mode(world: World) -> None:
    for path in (SESSION_PREFIX, f"{SESSION_PREFIX}/mutations/{world.own_a['mutationId']}"):
        assert_error(
            await world.http.get(f"{API}{path}", headers=bearer(world.session_a)), 401, "unauthorized"
        )
        answer = await world.http.get(f"{SANDBOX}{path}", headers=bearer(world.session_a))
        assert answer.status_code == 200, answer.text


# --- 2. function level -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    name: str
    headers: dict[str, str]
    query: dict[str, str]
    sandbox: bool = False


async def bad_credentials(world: World) -> list[Credential]:
    """Every credential the contract answers with the same 401."""
    revoked = await region_key(world.http, world.a, "revoked")
    gone = await world.http.delete(f"{API}/api-keys/{revoked['id']}", headers=world.a.headers())
    assert gone.status_code == 200, gone.text
    return [
        Credential("none", {}, {}),
        Credential("malformed key", {"x-api-key": "not-a-key"}, {}),
        Credential("malformed oreg key", {"x-api-key": "oreg_" + "A" * 49}, {}),
        Credential("unknown key", {"x-api-key": tokens.generate_key()}, {}),
        Credential("unknown key in the deprecated header", {"api-key": tokens.generate_key()}, {}),
        Credential("revoked key", {"x-api-key": revoked["key"]}, {}),
        Credential("key in the query string", {}, {"x-api-key": world.a.key}),
        Credential("admin key in the query string", {}, {"api-key": world.admin}),
        Credential("empty bearer", {"authorization": "Bearer "}, {}),
        Credential("unknown bearer", {"authorization": "Bearer ocs_" + "x" * 43}, {}),
    ]


def non_public(app: FastAPI) -> list[APIRoute]:
    """Every contract route (under the base path) that needs credentials."""
    return [
        r for r in api_routes(app) if r.path.startswith(API) and not isinstance(route_access(r), PublicAccess)
    ]


def any_ids(world: World) -> dict[str, str]:
    return {**world.holdings["A", API], "regionId": world.a.id}


def target_url(route: APIRoute, ids: dict[str, str], prefix: str = API) -> str:
    return with_prefix(prefix, fill(template(route), ids))


async def request_as(
    world: World, route: APIRoute, method: str, credential: Credential, ids: dict[str, str]
) -> httpx.Response:
    prefix = SANDBOX if credential.sandbox else API
    return await world.http.request(
        method,
        target_url(route, ids, prefix),
        json=valid_body(route, method, BodyContext(world.webhook_url)),
        params=credential.query,
        headers=credential.headers,
    )


async def test_missing_malformed_unknown_and_revoked_credentials_get_one_401_everywhere(
    app: FastAPI, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    credentials = await bad_credentials(world)
    counts = await table_counts(sessions, [world.a.id, world.b.id])
    bodies, wrong, checked = set(), [], 0
    for route in non_public(app):
        for method in sorted(route.methods or ()):
            for credential in credentials:
                for prefix_sandbox in (False, True):
                    probe = Credential(credential.name, credential.headers, credential.query, prefix_sandbox)
                    answer = await request_as(world, route, method, probe, any_ids(world))
                    checked += 1
                    try:
                        assert_error(answer, 401, "unauthorized")
                    except AssertionError:
                        wrong.append(f"{credential.name}: {method} {route.path} → {answer.text[:200]}")
                        continue
                    bodies.add(repr(envelope_without_meta(answer)))
    assert not wrong, "credentials not refused with 401:\n" + "\n".join(wrong)
    assert len(bodies) == 1, f"the 401 bodies differ: {bodies}"
    assert checked >= 50 * len(credentials) * 2
    assert await table_counts(sessions, [world.a.id, world.b.id]) == counts


async def test_session_tokens_open_only_session_routes_and_api_keys_never_do(
    app: FastAPI, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    session_ids = {**world.own_a}
    counts = await table_counts(sessions, [world.a.id, world.b.id])
    wrong = []
    for route in non_public(app):
        is_session = isinstance(route_access(route), SessionAccess)
        if is_session:
            credentials = [
                Credential("region key", world.a.headers(), {}, sandbox=True),
                Credential("admin key", {"x-api-key": world.admin, "x-region-id": world.a.id}, {}, True),
                Credential("region key, live", world.a.headers(), {}),
            ]
            ids = session_ids
        else:
            credentials = [
                Credential("session token", bearer(world.session_a), {}, sandbox=True),
                Credential("session token, live", bearer(world.session_a), {}),
                Credential("session token as x-api-key", {"x-api-key": world.session_a}, {}, sandbox=True),
            ]
            ids = {**world.holdings["A", SANDBOX], "regionId": world.a.id}
        for method in sorted(route.methods or ()):
            for credential in credentials:
                answer = await request_as(world, route, method, credential, ids)
                if answer.status_code != 401 or answer.json().get("error", {}).get("code") != "unauthorized":
                    wrong.append(f"{credential.name}: {method} {route.path} → {answer.text[:200]}")
    assert not wrong, "credentials of the wrong kind were not refused with 401:\n" + "\n".join(wrong)
    assert await table_counts(sessions, [world.a.id, world.b.id]) == counts
    still = await world.http.get(f"{SANDBOX}{SESSION_PREFIX}", headers=bearer(world.session_a))
    assert still.status_code == 200, still.text


async def test_region_routes_refuse_a_key_for_another_region_and_an_admin_key_without_a_region(
    app: FastAPI, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """§1.2: a region key naming another region in x-region-id → 403; an admin key on a region route
    without x-region-id → 400 naming the header. Nothing is queued either way."""
    pairs = [(r, m) for r in routes_with(app, RegionAccess) for m in sorted(r.methods or ())]
    admins = [await world.new_admin() for _ in pairs]  # before counting: these add key rows
    counts = await table_counts(sessions, [world.a.id, world.b.id])
    wrong = []
    for (route, method), admin in zip(pairs, admins, strict=True):
        cases = [
            (
                Credential("B key for A", world.b.headers(**{"x-region-id": world.a.id}), {}),
                403,
                "forbidden",
            ),
            (
                Credential("admin key, no region", {"x-api-key": admin}, {}),
                400,
                "bad_request",
            ),
        ]
        for credential, status, code in cases:
            answer = await request_as(world, route, method, credential, any_ids(world))
            try:
                assert_error(answer, status, code)
            except AssertionError:
                wrong.append(f"{credential.name}: {method} {route.path} → {answer.text[:200]}")
            if code == "bad_request" and "x-region-id" not in answer.json().get("message", ""):
                wrong.append(f"{credential.name}: {method} {route.path}: message does not name x-region-id")
    assert not wrong, "region routes answered the wrong caller:\n" + "\n".join(wrong)
    assert await table_counts(sessions, [world.a.id, world.b.id]) == counts


class Targets:
    """Fresh throwaway targets for admin and platform routes: a region to read and patch, keys to delete."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def ids(self, route: APIRoute) -> dict[str, str]:
        ids: dict[str, str] = {}
        admin = await self.world.new_admin()
        for param in id_params(route):
            if param == "regionId":
                ids[param] = (await _region(self.world.http, admin, "Regio Doelwit")).id
            elif param == "keyId" and route.path.startswith(f"{API}/admin/"):
                created = await self.world.http.post(
                    f"{API}/admin/api-keys", json={"name": "doelwit"}, headers={"x-api-key": admin}
                )
                assert created.status_code == 201, created.text
                ids[param] = created.json()["data"]["id"]
            elif param == "keyId":
                ids[param] = (await region_key(self.world.http, self.world.a, "doelwit"))["id"]
            else:
                raise AssertionError(f"{route.path}: no target factory for {param}")
        return ids


def expected_for_admin_route(credential: str) -> tuple[int, str] | None:
    """None: success (2xx)."""
    if credential.startswith("region key"):
        return 403, "forbidden"
    if credential.startswith("admin"):
        return None
    return 401, "unauthorized"


def expected_for_platform_route(credential: str) -> tuple[int, str] | None:
    if credential == "admin key without x-region-id":
        return 400, "bad_request"
    if credential in ("session token", "none", "unknown key"):
        return 401, "unauthorized"
    if credential == "region key with x-region-id of another region":
        return 403, "forbidden"
    return None


async def test_admin_and_platform_routes_answer_each_credential_kind_as_the_contract_says(
    app: FastAPI, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    targets = Targets(world)
    admin_routes, platform_routes = (
        routes_with(app, AdminAccess),
        [r for r in routes_with(app, RegionAccess) if r.path.startswith(API) and _platform(r)],
    )
    assert len(admin_routes) >= 8 and len(platform_routes) >= 4
    a, b = world.a, world.b

    def credential_kinds(admin: str) -> list[Credential]:
        return [
            Credential("none", {}, {}),
            Credential("unknown key", {"x-api-key": tokens.generate_key()}, {}),
            Credential("session token", bearer(world.session_a), {}, sandbox=True),
            Credential("region key", a.headers(), {}),
            Credential("region key in sandbox", a.headers(), {}, sandbox=True),
            Credential("region key with x-region-id", a.headers(**{"x-region-id": a.id}), {}),
            Credential(
                "region key with x-region-id of another region", b.headers(**{"x-region-id": a.id}), {}
            ),
            Credential("admin key without x-region-id", {"x-api-key": admin}, {}),
            Credential("admin key with x-region-id", {"x-api-key": admin, "x-region-id": a.id}, {}),
            Credential("admin key in sandbox", {"x-api-key": admin, "x-region-id": a.id}, {}, sandbox=True),
        ]

    wrong: list[str] = []
    checked = 0
    for routes, expect in (
        (admin_routes, expected_for_admin_route),
        (platform_routes, expected_for_platform_route),
    ):
        for route in routes:
            for method in sorted(route.methods or ()):
                kinds = credential_kinds(await world.new_admin())
                checked += await _check_kinds(world, sessions, targets, route, method, kinds, expect, wrong)
    assert not wrong, "function-level access broken:\n" + "\n".join(wrong)
    assert checked >= 12 * 10


def _platform(route: APIRoute) -> bool:
    access = route_access(route)
    return isinstance(access, RegionAccess) and access.platform


async def _check_kinds(
    world: World,
    sessions: async_sessionmaker[AsyncSession],
    targets: Targets,
    route: APIRoute,
    method: str,
    kinds: list[Credential],
    expect: Callable[[str], tuple[int, str] | None],
    wrong: list[str],
) -> int:
    """Refused kinds first on one target (which must stay untouched), then each allowed kind on a fresh
    one; the first allowed call reuses the target, proving the refused calls left it as it was."""
    regions = [world.a.id, world.b.id]
    target = await targets.ids(route)
    counts = await table_counts(sessions, regions)
    refused = [k for k in kinds if expect(k.name) is not None]
    allowed = [k for k in kinds if expect(k.name) is None]
    for credential in refused:
        status, code = expect(credential.name) or (0, "")
        answer = await request_as(world, route, method, credential, target)
        try:
            assert_error(answer, status, code)
        except AssertionError:
            wrong.append(
                f"{credential.name}: {method} {route.path} → {answer.status_code} {answer.text[:200]}"
            )
    if await table_counts(sessions, regions) != counts:
        wrong.append(f"refused calls changed rows: {method} {route.path}")
    for index, credential in enumerate(allowed):
        ids = target if index == 0 else await targets.ids(route)
        answer = await request_as(world, route, method, credential, ids)
        body = answer.json()
        if not (200 <= answer.status_code < 300 and body["meta"]["sandboxEnabled"] is False):
            wrong.append(
                f"{credential.name}: {method} {route.path} → {answer.status_code} {answer.text[:200]}"
            )
    return len(kinds)


# --- 3. mass assignment ------------------------------------------------------------------------------

EXAMPLES = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=20)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(TEXT, inner, max_size=2),
    max_leaves=4,
)
GENERIC_READ_ONLY = ["id", "createdAt", "updatedAt", "regionId", "sandbox", "status"]
CANDIDATE_READ_ONLY = ["archived", "archivedAt", "privacyConsentAt"]
# Read-only properties per kind of object in a body, beyond the generic ones.
READ_ONLY = {
    "candidate": CANDIDATE_READ_ONLY,
    "interaction": ["candidateId"],
    "attachment": ["candidateId", "field", "size", "sha256"],
    "attachments": ["candidateId"],
    "webhook": ["secret", "disabledAt", "disabledReason", "lastDeliveryAt"],
    "key": ["key", "scope", "prefix", "lastUsedAt", "revokedAt"],
    "admin key": ["key", "scope", "prefix", "lastUsedAt", "revokedAt", "permissions"],
    "region": ["version"],
    "find": [],
    "verification": ["sandboxCode"],
    "session": ["sessionToken", "expiresAt", "idleExpiresAt"],
}
# Where objects sit in each valid body: (path to the object, its kind).
LOCATIONS: dict[tuple[str, str], list[tuple[tuple[str | int, ...], str]]] = {
    ("POST", "/candidates"): [
        ((0,), "candidate"),
        ((0, "interactions", 0), "interaction"),
        ((0, "curriculumVitae", 0), "attachment"),
    ],
    ("POST", "/candidates/upsert"): [((), "candidate")],
    ("POST", "/candidates/find"): [((), "find")],
    ("PATCH", "/candidates/{candidateId}"): [((), "candidate")],
    ("POST", "/candidates/{candidateId}/attachments"): [
        ((), "attachments"),
        (("curriculumVitae", 0), "attachment"),
    ],
    ("POST", "/candidates/{candidateId}/interactions"): [((0,), "interaction")],
    ("PATCH", "/interactions/{interactionId}"): [((), "interaction")],
    ("POST", "/auth/candidates/verification"): [((), "verification")],
    ("POST", "/auth/candidates/sessions"): [((), "session")],
    ("PATCH", "/auth/candidates/session/candidates/{candidateId}"): [((), "candidate")],
    ("POST", "/webhooks"): [((), "webhook")],
    ("PATCH", "/webhooks/{webhookId}"): [((), "webhook")],
    ("POST", "/api-keys"): [((), "key")],
    ("POST", "/admin/api-keys"): [((), "admin key")],
    ("POST", "/regions"): [((), "region")],
    ("PATCH", "/regions/{regionId}"): [((), "region")],
}
# How each route answers its valid body (the positive control).
SUCCESS = {
    ("POST", "/candidates/find"): 200,
    ("POST", "/auth/candidates/sessions"): 201,
    ("POST", "/webhooks"): 201,
    ("PATCH", "/webhooks/{webhookId}"): 200,
    ("POST", "/api-keys"): 201,
    ("POST", "/admin/api-keys"): 201,
    ("POST", "/regions"): 201,
    ("PATCH", "/regions/{regionId}"): 200,
}


def property_names(schema: Any) -> set[str]:
    """Every property name anywhere in a JSON Schema document: none of them counts as unknown."""
    names: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                names |= set(value)
            names |= property_names(value)
    elif isinstance(schema, list):
        for item in schema:
            names |= property_names(item)
    return names


@st.composite
def injections(
    draw: st.DrawFn, locations: list[tuple[tuple[str | int, ...], str]], known: set[str]
) -> tuple[tuple[str | int, ...], dict[str, Any]]:
    """A place in the body, and one or more read-only or unknown properties to add there."""
    path, kind = draw(st.sampled_from(locations))
    read_only = draw(st.lists(st.sampled_from(GENERIC_READ_ONLY + READ_ONLY[kind]), unique=True, max_size=3))
    unknown_name = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=15).filter(
        lambda name: name not in known
    )
    unknown = draw(st.lists(unknown_name, unique=True, min_size=0 if read_only else 1, max_size=2))
    plausible = {
        "id": st.just("cand_01JQ3ZZZZZZZZZZZZZZZZZZZZZ"),
        "regionId": st.just("reg_01JQ3ZZZZZZZZZZZZZZZZZZZZZ"),
        "createdAt": st.just("2020-01-01T00:00:00Z"),
        "sandbox": st.booleans(),
        "archived": st.booleans(),
        "status": st.sampled_from(["succeeded", "failed"]),
    }
    extras = {name: draw(plausible.get(name, ANY_JSON) | ANY_JSON) for name in read_only + unknown}
    return path, extras


def injected(body: Any, path: tuple[str | int, ...], extras: dict[str, Any]) -> Any:
    changed = copy.deepcopy(body)
    target = changed
    for part in path:
        target = target[part]
    assert isinstance(target, dict), (path, body)
    target.update(extras)
    return changed


@dataclass
class BodyRoute:
    route: APIRoute
    method: str
    key: tuple[str, str]
    prefix: str
    headers: dict[str, str]
    ids: dict[str, str]
    read_back: str | None  # for PATCH: where the target reads back
    http: httpx.AsyncClient


async def known_properties(app: FastAPI, world: World, key: tuple[str, str]) -> set[str]:
    """The property names a body of this route may legitimately hold."""
    document = app.openapi()
    operation = document["paths"][f"{API}{key[1]}"][key[0].lower()]
    names = property_names(operation["requestBody"]) | property_names(
        [document["components"]["schemas"][s] for s in _refs(operation["requestBody"])]
    )
    for operation_name in ("create", "update"):
        schema = await world.http.get(
            f"{API}/schema", params={"operation": operation_name}, headers=world.a.headers()
        )
        assert schema.status_code == 200, schema.text
        names |= property_names(schema.json()["data"])
    return names


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"].rsplit("/", 1)[-1]] if "$ref" in value else []
        return found + [r for item in value.values() for r in _refs(item)]
    if isinstance(value, list):
        return [r for item in value for r in _refs(item)]
    return []


def body_routes(app: FastAPI, world: World, session_candidate: str) -> list[BodyRoute]:
    document_paths = app.openapi()["paths"]
    found = []
    live = world.holdings["A", API]
    for route in api_routes(app):
        if route.body_field is None or route.path == TEST_WRITES:  # the tests' own write route
            continue
        access = route_access(route)
        for method in sorted(route.methods or ()):
            key = (method, template(route))
            assert "requestBody" in document_paths[route.path][method.lower()], key
            assert key in LOCATIONS, f"{key}: no injection locations; add it to LOCATIONS"
            on_session = key[1].startswith("/auth/candidates")
            prefix = SANDBOX if on_session else API
            headers = (
                {"x-api-key": "fresh admin key"}
                if isinstance(access, AdminAccess)
                else bearer(world.session_a)
                if isinstance(access, SessionAccess)
                else world.a.headers()
            )
            ids = {
                **live,
                "regionId": world.b.id,
                "candidateId": session_candidate if on_session else live["candidateId"],
            }
            read_back = None
            if method == "PATCH":
                read_back = (
                    f"{SANDBOX}/candidates/{session_candidate}" if on_session else target_url(route, ids)
                )
            found.append(BodyRoute(route, method, key, prefix, headers, ids, read_back, world.http))
    return found


async def test_read_only_and_unknown_properties_are_refused_in_every_body(
    app: FastAPI, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    session_candidate = world.own_a["candidateId"]
    routes = body_routes(app, world, session_candidate)
    assert len(routes) >= 15
    loop = asyncio.get_running_loop()

    def blocking(job: Coroutine[Any, Any, httpx.Response]) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(job, loop).result()

    regions = [world.a.id, world.b.id]
    for body_route in routes:
        if body_route.headers.get("x-api-key") == "fresh admin key":
            body_route.headers = {"x-api-key": await world.new_admin()}
        known = await known_properties(app, world, body_route.key)
        context = await _body_context(world, body_route)
        base = valid_body(body_route.route, body_route.method, context)
        url = with_prefix(body_route.prefix, fill(body_route.key[1], body_route.ids))
        before_counts = await table_counts(sessions, regions)
        before_target = await _read_back(world, body_route)

        await asyncio.to_thread(refuse_injections, body_route, url, base, known, blocking)
        assert await table_counts(sessions, regions) == before_counts, body_route.key
        assert await _read_back(world, body_route) == before_target, body_route.key
        # the positive control: the body without the additions is accepted, so the 422s came from them
        fresh = await _body_context(world, body_route)
        answer = await world.http.request(
            body_route.method,
            url,
            json=valid_body(body_route.route, body_route.method, fresh),
            headers=body_route.headers,
        )
        assert answer.status_code == SUCCESS.get(body_route.key, 202), (body_route.key, answer.text)
        if answer.status_code == 202 and "statusUrl" in answer.json()["data"]:
            await _until_final(world.http, answer.json()["data"]["statusUrl"], body_route.headers)


def refuse_injections(
    body_route: BodyRoute,
    url: str,
    base: Any,
    known: set[str],
    blocking: Callable[[Coroutine[Any, Any, httpx.Response]], httpx.Response],
) -> None:
    """Hypothesis's examples (synchronous, in a thread): each body with additions → 422."""
    http = body_route.http

    @EXAMPLES
    @given(change=injections(LOCATIONS[body_route.key], known))
    def check(change: tuple[tuple[str | int, ...], dict[str, Any]]) -> None:
        path, extras = change
        body = injected(base, path, extras)
        answer = blocking(http.request(body_route.method, url, json=body, headers=body_route.headers))
        assert answer.status_code == 422, f"{body_route.key} accepted {body!r}: {answer.text[:300]}"
        assert_error(answer, 422, "validation_failed")

    check()


async def _until_final(http: httpx.AsyncClient, status_url: str, headers: dict[str, str]) -> None:
    """Waits for a positive control's write to be applied, so that it cannot count against the next route."""
    for _ in range(400):
        answer = await http.get(status_url, headers=headers)
        assert answer.status_code == 200, (status_url, answer.text)
        if answer.json()["data"]["status"] in ("succeeded", "failed", "canceled"):
            assert answer.json()["data"]["status"] == "succeeded", answer.text
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{status_url} never finished")


async def _body_context(world: World, body_route: BodyRoute) -> BodyContext:
    context = BodyContext(world.webhook_url)
    if body_route.key == ("POST", "/auth/candidates/sessions"):
        _, address = await sandbox_candidate(world.http, world.a)
        context.email, context.code = address, await sandbox_code(world.http, world.a, address)
    return context


async def _read_back(world: World, body_route: BodyRoute) -> Any:
    if body_route.read_back is None:
        return None
    headers = body_route.headers if "/regions/" in body_route.read_back else world.a.headers()
    answer = await world.http.get(body_route.read_back, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]
