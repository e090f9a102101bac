"""Building blocks of tests/test_security_matrix.py: real resources of every kind that a route's id
can name, a valid body for every route that takes one, and snapshots that show nothing changed."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi.routing import APIRoute
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import attachment_files as files
from tests.conftest import Tenant
from tests.engine_helpers import final
from tests.test_callbacks import wait_for

API, SANDBOX = "/api/v2", "/api/sandbox"
ID_PARAM = re.compile(r"\{(\w+)\}")
ROOMY = {"requestsPerSecond": 1000, "burst": 1000, "keyRequestsPerSecond": 1000, "keyBurst": 1000}

# Every id parameter the region-data routes use, and the resource kind behind it. A route whose id
# parameter is missing here makes the matrix fail: a new route cannot slip through untested.
REGION_ID_PARAMS = {
    "candidateId",
    "interactionId",
    "attachmentId",
    "mutationId",
    "webhookId",
    "deliveryId",
    "keyId",
}
# The candidate's own session routes: ids of candidates and of mutations that session created.
SESSION_ID_PARAMS = {"candidateId", "mutationId"}
# Admin routes (platform-wide, no tenant to isolate): covered by the function-level matrix.
ADMIN_ID_PARAMS = {"regionId", "keyId"}

# Tables whose rows a refused request must never add, change the count of, or queue.
WATCHED_REGION_TABLES = (
    "mutations",
    "candidates",
    "interactions",
    "attachments",
    "webhook_endpoints",
    "webhook_messages",
    "idempotency_records",
    "candidate_sessions",
    "session_mutations",
    "verification_requests",
    "events",
)


def template(route: APIRoute) -> str:
    """The route's path relative to the live base path."""
    path = route.path
    assert path.startswith(API), path
    return path[len(API) :]


def id_params(route: APIRoute) -> list[str]:
    return ID_PARAM.findall(route.path)


def fill(path_template: str, ids: dict[str, str]) -> str:
    return ID_PARAM.sub(lambda match: ids[match.group(1)], path_template)


def email() -> str:
    return f"sec-{uuid.uuid4().hex[:12]}@example.org"


def person(**changes: Any) -> dict[str, Any]:
    return {"name": "Sanne de Vries", "email": email(), "privacyConsent": True, **changes}


INTERACTION = {"type": "Telefonisch", "performedAt": "2026-03-24T11:15:00+01:00", "title": "Intake"}


def pdf_input() -> dict[str, str]:
    return files.base64_input(files.pdf(), "cv.pdf")


@dataclass
class BodyContext:
    """What a valid body may need to name: a receiver URL, a session's e-mail and code."""

    webhook_url: str
    email: str = field(default_factory=email)
    code: str = "000000"


# A valid body for every (method, path template) that takes one. A route with a body that is not here
# fails the tests that need it.
VALID_BODIES: dict[tuple[str, str], Callable[[BodyContext], Any]] = {
    ("POST", "/candidates"): lambda _: [
        person(interactions=[dict(INTERACTION)], curriculumVitae=[pdf_input()])
    ],
    ("POST", "/candidates/upsert"): lambda _: person(city="Utrecht"),
    ("POST", "/candidates/find"): lambda _: {"email": "niemand@example.org"},
    ("PATCH", "/candidates/{candidateId}"): lambda _: {"city": "Amersfoort"},
    ("POST", "/candidates/{candidateId}/attachments"): lambda _: {"curriculumVitae": [pdf_input()]},
    ("POST", "/candidates/{candidateId}/interactions"): lambda _: [dict(INTERACTION)],
    ("PATCH", "/interactions/{interactionId}"): lambda _: {"title": "Tweede gesprek"},
    ("POST", "/auth/candidates/verification"): lambda c: {"email": c.email},
    ("POST", "/auth/candidates/sessions"): lambda c: {"email": c.email, "code": c.code},
    ("PATCH", "/auth/candidates/session/candidates/{candidateId}"): lambda _: {"phone": "0612345678"},
    ("POST", "/webhooks"): lambda c: {"url": c.webhook_url, "events": ["webhook.test"]},
    ("PATCH", "/webhooks/{webhookId}"): lambda _: {"description": "changed"},
    ("POST", "/api-keys"): lambda _: {"name": "matrix key"},
    ("POST", "/admin/api-keys"): lambda _: {"name": "matrix admin key"},
    ("POST", "/regions"): lambda _: {"name": "Regio Matrix", "rateLimit": ROOMY},
    ("PATCH", "/regions/{regionId}"): lambda _: {"name": "Regio Matrix (hernoemd)"},
    ("POST", "/test-records"): lambda _: [{"value": "matrix"}],  # the tests' own write route
}


def valid_body(route: APIRoute, method: str, context: BodyContext) -> Any:
    if route.body_field is None:
        return None
    make = VALID_BODIES.get((method, template(route)))
    assert make is not None, f"no valid body for {method} {route.path}: add one to VALID_BODIES"
    return make(context)


async def region_key(http: httpx.AsyncClient, tenant: Tenant, name: str = "extra key") -> dict[str, Any]:
    created = await http.post(f"{API}/api-keys", json={"name": name}, headers=tenant.headers())
    assert created.status_code == 201, created.text
    data: dict[str, Any] = created.json()["data"]
    return data


async def build_holdings(
    http: httpx.AsyncClient, tenant: Tenant, prefix: str, webhook_url: str, key_id: str
) -> dict[str, str]:
    """One region's resources of every kind in one mode, applied; returns them by id parameter name."""
    headers = tenant.headers()
    hook = await http.post(
        f"{prefix}/webhooks", json={"url": webhook_url, "events": ["webhook.test"]}, headers=headers
    )
    assert hook.status_code == 201, hook.text
    webhook_id = hook.json()["data"]["id"]
    body = [person(interactions=[dict(INTERACTION)], curriculumVitae=[pdf_input()])]
    created = await http.post(f"{prefix}/candidates", json=body, headers=headers)
    assert created.status_code == 202, created.text
    mutation_id = created.json()["data"]["mutationId"]
    outcome = await final(http, tenant, mutation_id, sandbox=prefix == SANDBOX)
    assert outcome["status"] == "succeeded", outcome
    [candidate_id] = created.json()["data"]["resourceIds"]
    read = await http.get(
        f"{prefix}/candidates/{candidate_id}", params={"include": "interactions"}, headers=headers
    )
    assert read.status_code == 200, read.text
    candidate = read.json()["data"]
    tested = await http.post(f"{prefix}/webhooks/{webhook_id}/test", headers=headers)
    assert tested.status_code == 202, tested.text

    async def first_delivery() -> str | None:
        log = await http.get(f"{prefix}/webhooks/{webhook_id}/deliveries", headers=headers)
        assert log.status_code == 200, log.text
        return str(log.json()["data"][0]["id"]) if log.json()["data"] else None

    return {
        "candidateId": candidate_id,
        "interactionId": candidate["interactions"][0]["id"],
        "attachmentId": candidate["curriculumVitae"][0]["id"],
        "mutationId": mutation_id,
        "webhookId": webhook_id,
        "deliveryId": await wait_for(first_delivery),
        "keyId": key_id,
    }


async def resource_snapshot(
    http: httpx.AsyncClient, tenant: Tenant, prefix: str, ids: dict[str, str]
) -> dict[str, Any]:
    """What the owner reads about its resources; a refused foreign request must leave all of it as it was."""
    headers = tenant.headers()
    reads: dict[str, tuple[str, dict[str, str | int]]] = {
        "candidate": (f"/candidates/{ids['candidateId']}", {"include": "interactions"}),
        "interaction": (f"/interactions/{ids['interactionId']}", {}),
        "attachment": (f"/attachments/{ids['attachmentId']}", {}),
        "mutation": (f"/mutations/{ids['mutationId']}", {}),
        "webhook": (f"/webhooks/{ids['webhookId']}", {}),
        "deliveries": (f"/webhooks/{ids['webhookId']}/deliveries", {}),
        "mutations": ("/mutations", {"pageSize": 100}),
    }
    snapshot: dict[str, Any] = {}
    for name, (path, params) in reads.items():
        answer = await http.get(f"{prefix}{path}", params=params, headers=headers)
        assert answer.status_code == 200, (name, answer.text)
        snapshot[name] = answer.json()["data"]
    content = await http.get(f"{prefix}/attachments/{ids['attachmentId']}/content", headers=headers)
    assert content.status_code == 200, content.text
    snapshot["content"] = hashlib.sha256(content.content).hexdigest()
    keys = await http.get(f"{API}/api-keys", params={"pageSize": 100}, headers=headers)
    assert keys.status_code == 200, keys.text
    snapshot["keys"] = [{k: v for k, v in key.items() if k != "lastUsedAt"} for key in keys.json()["data"]]
    return snapshot


async def table_counts(sessions: async_sessionmaker[AsyncSession], region_ids: list[str]) -> dict[str, int]:
    """Rows per watched table of these regions (both modes), live keys of them, and all regions and keys."""
    regions = ", ".join(f"'{region_id}'" for region_id in region_ids)
    assert all(re.fullmatch(r"reg_[0-9A-Za-z]+", r) for r in region_ids), region_ids
    parts = [
        f"SELECT '{name}' AS name, count(*) AS n FROM {name} WHERE region_id IN ({regions})"  # noqa: S608
        for name in WATCHED_REGION_TABLES
    ]
    parts += [
        "SELECT 'all regions', count(*) FROM regions",
        "SELECT 'all keys', count(*) FROM api_keys",
        "SELECT 'active keys', count(*) FROM api_keys WHERE revoked_at IS NULL",
    ]
    statement = text(" UNION ALL ".join(parts)).execution_options(cross_region=True)
    async with sessions() as session:
        rows = (await session.execute(statement)).all()
    return {str(name): int(count) for name, count in rows}
