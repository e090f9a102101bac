"""Resource limits (contract §1.3, §1.4): oversize bodies refused without buffering them, capped lists,
bounded request schemas, and rate limits that hold under load without touching other regions."""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from onderwijsregio.app import api_routes, create_app
from onderwijsregio.attachments.schemas import AttachmentsAdd
from onderwijsregio.auth.dependencies import AdminAccess, RegionAccess, route_access
from onderwijsregio.candidates.validation import as_items, models_of
from onderwijsregio.config import Settings
from onderwijsregio.errors import ValidationFailed
from onderwijsregio.interactions.schemas import InteractionInput, InteractionUpdate
from onderwijsregio.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from onderwijsregio.regions.models import Region
from tests.conftest import API, Tenant
from tests.live import Server, environment, fresh_database, run_cli, serve
from tests.test_envelope import assert_error
from tests.test_rate_limits import REDIS_URL

MIB = 1024 * 1024
UPLOAD = 100 * MIB
MAX_RSS_GROWTH = 20_000_000  # bytes


# --- 1. A 100 MiB body: 413 without holding it in memory -------------------------------------------


def _process_tree(root: int) -> list[int]:
    """The process and every descendant (a server may fork workers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # the command name may hold spaces and parentheses: the fields after its last ")" count
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def rss_bytes(root: int) -> int:
    total = 0
    for pid in _process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


@contextlib.contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    """Samples the resident memory of the process tree every few milliseconds; yields [peak]."""
    peak = [rss_bytes(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes(pid))
            stop.wait(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], rss_bytes(pid))


@dataclass
class Upload:
    status: int
    body: dict[str, Any]
    sent: int


def upload(server: Server, path: str, headers: dict[str, str], size: int, *, chunked: bool) -> Upload:
    """Sends `size` bytes as fast as the server takes them, stopping as soon as it answers (a client
    library would not read the answer before it had sent everything)."""
    port = int(server.url.rsplit(":", 1)[1])
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    request += f"{head}{framing}\r\n\r\n"
    piece = b"[" * (64 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request.encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
            while sent < size and not select.select([connection], [], [], 0)[0]:
                chunk = piece[: size - sent]
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                sent += len(chunk)
            if chunked and sent == size:
                connection.sendall(b"0\r\n\r\n")
        status, body = _read_answer(connection)
    return Upload(status, body, sent)


def _read_answer(connection: socket.socket) -> tuple[int, dict[str, Any]]:
    received = b""
    while b"\r\n\r\n" not in received:
        data = connection.recv(65536)
        assert data, f"the connection closed without an answer: {received!r}"
        received += data
    head, body = received.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        data = connection.recv(65536)
        assert data, "the connection closed in the middle of the answer"
        body += data
    return int(lines[0].split()[1]), orjson.loads(body[:length])


def test_a_100_mib_body_is_refused_without_being_held_in_memory(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as database:
        env = environment(database)
        created = run_cli(["admin", "create-region", "--name", "upload"], tmp_path, env)
        assert created.returncode == 0, created.stderr
        _region_id, key = created.stdout.split()
        headers = {"x-api-key": key}
        routes = [f"{API}/candidates", f"{API}/candidates/cand_01JQ3ZZZZZZZZZZZZZZZZZZZZZ/attachments"]
        with serve(tmp_path, env) as server:
            for path in routes:  # warm up: the first request of a route imports and caches things
                small = httpx.post(server.url + path, json={}, headers=headers, timeout=30)
                assert small.status_code in (404, 422), small.text
            growth = {}
            for path in routes:
                for chunked in (True, False):
                    before = rss_bytes(server.process.pid)
                    with peak_rss(server.process.pid) as peak:
                        answer = upload(server, path, headers, UPLOAD, chunked=chunked)
                    case = f"{path} {'chunked' if chunked else 'content-length'}"
                    growth[case] = peak[0] - before
                    assert answer.status == 413, (case, answer)
                    assert answer.body["error"]["code"] == "payload_too_large", (case, answer)
                    assert answer.body["statusCode"] == 413 and answer.body["data"] is None, answer
                    assert answer.sent < UPLOAD, f"{case}: answered only after the whole body was sent"
            assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        over = {case: f"{grown / MIB:.1f} MiB" for case, grown in growth.items() if grown >= MAX_RSS_GROWTH}
        assert not over, f"resident memory grew by {over} while refusing a 100 MiB body"


# --- 2. Every list is capped ----------------------------------------------------------------------

# GET lists the contract gives no paging, and what bounds them instead.
UNPAGED_LISTS = {
    # §3.2: `data` = the matches of one e-mail address or phone number; the service stops at 100.
    "/api/v2/candidates/find",
    # §3.6: one row per region and sandbox with work (platform administration, not region data).
    "/api/v2/admin/queue",
}


def list_routes(app: FastAPI) -> list[APIRoute]:
    """GET routes whose envelope's `data` is an array."""
    found = []
    for route in api_routes(app):
        model = route.response_model
        fields = getattr(model, "model_fields", {})
        if "GET" in (route.methods or ()) and "data" in fields:
            annotation = str(fields["data"].annotation)
            if annotation.startswith(("list[", "typing.List[")):
                found.append(route)
    return found


async def test_every_list_route_caps_its_page_size(
    app: FastAPI, client: httpx.AsyncClient, make_tenant: Any, admin_key: str
) -> None:
    tenant: Tenant = await make_tenant(rateLimit=LOOSE)  # about 60 requests in a moment
    ids = await _one_of_each(client, tenant)
    routes = list_routes(app)
    assert len(routes) >= 10, [r.path for r in routes]
    unpaged = {r.path for r in routes if "pageSize" not in _query_parameters(r)}
    assert unpaged == UNPAGED_LISTS, "a list route without pageSize is an uncapped list"
    for route in routes:
        if route.path in UNPAGED_LISTS:
            continue
        path = route.path.format(**ids)
        headers = _headers_for(route, tenant, admin_key)
        for wrong in (str(MAX_PAGE_SIZE + 1), "1000000", "0", "-1"):
            refused = await client.get(path, params={"pageSize": wrong}, headers=headers)
            assert_error(refused, 400, "bad_request")
        answer = await client.get(path, params={"pageSize": str(MAX_PAGE_SIZE)}, headers=headers)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json()["meta"]["pageSize"] == MAX_PAGE_SIZE
        default = await client.get(path, headers=headers)
        assert default.status_code == 200, (path, default.text)
        assert default.json()["meta"]["pageSize"] == DEFAULT_PAGE_SIZE, path
        assert len(default.json()["data"]) <= DEFAULT_PAGE_SIZE


async def test_the_default_page_holds_on_a_longer_list(client: httpx.AsyncClient, make_tenant: Any) -> None:
    """60 candidates (and so 60 creation events): the first page holds 50 and points to the rest."""
    tenant: Tenant = await make_tenant()
    mutation_ids = []
    for batch in range(6):
        people = [_person(f"page-{batch}-{n}") for n in range(10)]
        accepted = await client.post(f"{API}/candidates", json=people, headers=tenant.headers())
        assert accepted.status_code == 202, accepted.text
        mutation_ids.append(accepted.json()["data"]["mutationId"])
    await _until_applied(client, tenant, mutation_ids)
    for path in (f"{API}/candidates", f"{API}/events", f"{API}/mutations"):
        first = await client.get(path, headers=tenant.headers())
        assert first.status_code == 200, first.text
        expected = 6 if path.endswith("mutations") else DEFAULT_PAGE_SIZE
        assert len(first.json()["data"]) == expected, path
        assert (first.json()["meta"]["cursor"] is None) == path.endswith("mutations"), path


def _person(name: str) -> dict[str, Any]:
    return {"name": name, "email": f"{name}@example.org", "privacyConsent": True}


def _query_parameters(route: APIRoute) -> set[str]:
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names |= {str(param.alias) for param in dependant.query_params}
        pending += dependant.dependencies
    return names


def _headers_for(route: APIRoute, tenant: Tenant, admin_key: str) -> dict[str, str]:
    access = route_access(route)
    if isinstance(access, AdminAccess):
        return {"x-api-key": admin_key}
    assert isinstance(access, RegionAccess), f"{route.path}: a list for {access}?"
    return tenant.headers()


async def _one_of_each(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    """Real ids for the path parameters of the list routes."""
    created = await client.post(f"{API}/candidates", json=_person("lists"), headers=tenant.headers())
    assert created.status_code == 202, created.text
    await _until_applied(client, tenant, [created.json()["data"]["mutationId"]])
    hook = await client.post(
        f"{API}/webhooks",
        json={"url": "http://127.0.0.1:9999/hook", "events": ["candidate.created"]},
        headers=tenant.headers(),
    )
    assert hook.status_code == 201, hook.text
    return {"candidateId": created.json()["data"]["resourceIds"][0], "webhookId": hook.json()["data"]["id"]}


async def _until_applied(client: httpx.AsyncClient, tenant: Tenant, mutation_ids: list[str]) -> None:
    deadline = time.monotonic() + 30
    for mutation_id in mutation_ids:
        while True:
            read = await client.get(f"{API}/mutations/{mutation_id}", headers=tenant.headers())
            if read.json()["data"]["status"] == "succeeded":
                break
            assert time.monotonic() < deadline, read.text
            await asyncio.sleep(0.05)


# --- 3. Every string and array of a request is bounded --------------------------------------------

# Strings that need no maxLength: their format or pattern admits only short values.
BOUNDED_FORMATS = {"date", "date-time", "time", "uuid", "email"}
# Request bodies the OpenAPI document leaves open: their validators depend on the region (custom
# fields) or take one object or an array of them. Their validators are walked below instead.
OPEN_BODIES = {
    ("post", "/api/v2/candidates"),
    ("post", "/api/v2/candidates/upsert"),
    ("patch", "/api/v2/candidates/{candidateId}"),
    ("post", "/api/v2/candidates/{candidateId}/attachments"),
    ("patch", "/api/v2/auth/candidates/session/candidates/{candidateId}"),
    ("post", "/api/v2/candidates/{candidateId}/interactions"),
    ("patch", "/api/v2/interactions/{interactionId}"),
}
EVERY_CUSTOM_FIELD_TYPE = [
    {"key": f"f{kind.capitalize()}", "label": kind, "type": kind}
    for kind in ("string", "text", "integer", "number", "boolean", "date", "url", "email")
] + [
    {"key": "fSelect", "label": "select", "type": "select", "options": ["a", "b"]},
    {"key": "fMulti", "label": "multi", "type": "multiSelect", "options": ["a", "b"]},
]


@dataclass
class SchemaWalk:
    document: dict[str, Any]
    unbounded: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def walk(self, node: Any, where: str) -> None:
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            reference = str(node["$ref"])
            if reference not in self.seen:
                self.seen.add(reference)
                self.walk(self._resolve(reference), reference)
            return
        self._check(node, where)
        for keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for index, part in enumerate(node.get(keyword, [])):
                self.walk(part, f"{where}/{keyword}/{index}")
        for name, part in node.get("properties", {}).items():
            self.walk(part, f"{where}.{name}")
        for keyword in ("items", "additionalProperties", "not"):
            self.walk(node.get(keyword), f"{where}/{keyword}")

    def _check(self, node: dict[str, Any], where: str) -> None:
        kinds = node.get("type")
        kinds = set(kinds) if isinstance(kinds, list) else {kinds}
        if node == {} or ("type" not in node and not _has_parts(node) and "enum" not in node):
            self.unbounded.append(f"{where}: any value")
        if "string" in kinds and not _bounded_string(node):
            self.unbounded.append(f"{where}: string without maxLength")
        if "array" in kinds and "maxItems" not in node:
            self.unbounded.append(f"{where}: array without maxItems")
        open_object = node.get("additionalProperties", True) is not False and "maxProperties" not in node
        if "object" in kinds and open_object:
            self.unbounded.append(f"{where}: object open to any properties")

    def _resolve(self, reference: str) -> Any:
        node: Any = self.document
        for part in reference.removeprefix("#/").split("/"):
            node = node[part]
        return node


def _has_parts(node: dict[str, Any]) -> bool:
    return any(keyword in node for keyword in ("anyOf", "oneOf", "allOf", "const", "$ref"))


def _bounded_string(node: dict[str, Any]) -> bool:
    return any(keyword in node for keyword in ("maxLength", "enum", "const")) or (
        node.get("format") in BOUNDED_FORMATS or _bounded_pattern(node.get("pattern"))
    )


def _bounded_pattern(pattern: str | None) -> bool:
    """An anchored pattern without open-ended repetition (`*`, `+`, `{n,}`) admits only short values."""
    if not pattern or not pattern.startswith("^") or not pattern.endswith("$") or pattern.endswith("\\$"):
        return False
    return re.search(r"(?<!\\)[*+]|\{\d*,\}", pattern) is None


def unbounded_parts(schema: dict[str, Any], document: dict[str, Any] | None = None) -> list[str]:
    walk = SchemaWalk(document or schema)
    walk.walk(schema, "#")
    return walk.unbounded


def test_every_typed_request_body_is_bounded(settings: Settings) -> None:
    document = create_app(settings, run_workers=False).openapi()  # the served routes, no test ones
    open_bodies, unbounded = set(), {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody")
            if body is None:
                continue
            schema = body["content"]["application/json"]["schema"]
            if "$ref" not in schema and "type" not in schema and not _has_parts(schema):
                open_bodies.add((method, path))
                continue
            if found := unbounded_parts(schema, document):
                unbounded[f"{method.upper()} {path}"] = found
    assert unbounded == {}, "\n".join(
        f"{route}: {part}" for route, parts in unbounded.items() for part in parts
    )
    assert open_bodies == OPEN_BODIES


def test_the_validators_behind_open_bodies_are_bounded() -> None:
    """The candidate payloads of a region with a custom field of every type (what GET /schema
    publishes), interactions and attachments: every string, array and object bounded."""
    region = Region(id="reg_01JQ3ZZZZZZZZZZZZZZZZZZZZZ", version=1, custom_fields=EVERY_CUSTOM_FIELD_TYPE)
    create, update = models_of(region)
    models: dict[str, type[BaseModel]] = {
        "candidate create": create,
        "candidate update": update,
        "interaction create": InteractionInput,
        "interaction update": InteractionUpdate,
        "attachments add": AttachmentsAdd,
    }
    unbounded = {
        name: found for name, model in models.items() if (found := unbounded_parts(model.model_json_schema()))
    }
    assert unbounded == {}, "\n".join(
        f"{model}: {part}" for model, parts in unbounded.items() for part in parts
    )


def test_bodies_of_many_items_stop_at_ten() -> None:
    """The array around candidates and interactions (contract §1.4 batch sizes) is counted by
    `as_items`, outside the per-item schema."""
    assert len(as_items([{}] * 10)) == 10
    assert len(as_items({})) == 1
    wrongs: list[list[dict[str, Any]]] = [[{}] * 11, [{}] * 10_000, []]
    for wrong in wrongs:
        with pytest.raises(ValidationFailed):
            as_items(wrong)


# --- 4. Rate limits under twice their load --------------------------------------------------------

SECONDS = 6.0
RATE = 20  # requests per second, with a burst of as many: a moving window of one second
LOOSE = {"requestsPerSecond": 1000, "burst": 1000, "keyRequestsPerSecond": 1000, "keyBurst": 1000}


@dataclass
class Traffic:
    """Answers to requests sent at a steady pace, whatever the answers' speed (an open loop)."""

    statuses: list[int] = field(default_factory=list)
    refusals: list[httpx.Response] = field(default_factory=list)
    last_admitted: float = 0.0  # time.monotonic() of the last 200

    def admitted(self) -> int:
        return self.statuses.count(200)


async def steady(
    http: httpx.AsyncClient, keys: list[str], per_second: float, seconds: float, started: float
) -> Traffic:
    """Sends `per_second` requests a second for `seconds`, taking turns over `keys`."""
    traffic = Traffic()
    count = round(per_second * seconds)

    async def one(index: int) -> None:
        await asyncio.sleep(max(0.0, started + index / per_second - time.monotonic()))
        answer = await http.get(f"{API}/regions/me", headers={"x-api-key": keys[index % len(keys)]})
        traffic.statuses.append(answer.status_code)
        if answer.status_code == 200:
            traffic.last_admitted = max(traffic.last_admitted, time.monotonic())
        if answer.status_code == 429:
            traffic.refusals.append(answer)

    await asyncio.gather(*(one(index) for index in range(count)))
    return traffic


@pytest.mark.parametrize("storage", ["memory://", REDIS_URL], ids=["memory", "redis"])
def test_rate_limits_hold_under_twice_their_load_and_leave_other_regions_alone(
    tmp_path: Path, storage: str
) -> None:
    with fresh_database(tmp_path) as database:
        env = environment(database, ONDERWIJSREGIO_RATE_LIMIT_STORAGE=storage)
        admin = run_cli(["admin", "create-key", "--name", "ops"], tmp_path, env).stdout.split()[-1]
        regions = {}
        for name in ("per-key", "per-region", "calm"):
            created = run_cli(["admin", "create-region", "--name", name], tmp_path, env)
            assert created.returncode == 0, created.stderr
            regions[name] = created.stdout.split()
        with serve(tmp_path, env) as server:
            asyncio.run(_drive(server, admin, regions))


async def _drive(server: Server, admin: str, regions: dict[str, list[str]]) -> None:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
        per_key_region, per_key = regions["per-key"]
        per_region_region, first = regions["per-region"]
        _calm_region, calm = regions["calm"]
        await _set_limits(
            http, admin, per_key_region, {**LOOSE, "keyRequestsPerSecond": RATE, "keyBurst": RATE}
        )
        await _set_limits(http, admin, per_region_region, {**LOOSE, "requestsPerSecond": RATE, "burst": RATE})
        second = await http.post(f"{API}/api-keys", json={"name": "second"}, headers={"x-api-key": first})
        assert second.status_code == 201, second.text
        await asyncio.sleep(1.5)  # the key creation above leaves the region's window
        started = time.monotonic() + 0.2
        key_limited, region_limited, quiet = await asyncio.gather(
            steady(http, [per_key], 2 * RATE, SECONDS, started),  # one key at twice its rate
            # two keys at the rate each: the region's bucket, over all its keys, gets twice its rate
            steady(http, [first, second.json()["data"]["key"]], 2 * RATE, SECONDS, started),
            steady(http, [calm], 5, SECONDS, started),  # a tenth of the default region rate
        )
    for name, traffic in (("per key", key_limited), ("per region", region_limited)):
        admitted = traffic.admitted()
        assert set(traffic.statuses) <= {200, 429}, (name, traffic.statuses)
        # A token bucket admits its burst, then the rate; allow for the burst, then ±10 % of the rate.
        # The rate is over the time the admissions really took: on a busy machine the last requests
        # are answered after SECONDS, and a limiter rightly admits more over the longer time.
        seconds = max(SECONDS, traffic.last_admitted - started)
        assert 0.9 * RATE * SECONDS <= admitted <= RATE + 1.1 * RATE * seconds, (name, admitted, seconds)
        assert 429 in traffic.statuses, (name, "twice the rate, and nothing was refused")
        for refused in traffic.refusals:
            assert_error(refused, 429, "rate_limited")
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["ratelimit-limit"] == str(RATE)
    assert quiet.statuses == [200] * round(5 * SECONDS), "a region far below its limit was refused"


async def _set_limits(http: httpx.AsyncClient, admin: str, region_id: str, limits: dict[str, int]) -> None:
    changed = await http.patch(
        f"{API}/regions/{region_id}", json={"rateLimit": limits}, headers={"x-api-key": admin}
    )
    assert changed.status_code == 200, changed.text
