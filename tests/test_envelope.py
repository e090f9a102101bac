"""The envelope on every answer, success and error (contract §1, §1.1)."""

from __future__ import annotations

import logging
import re

import httpx
from fastapi import Depends

from onderwijsregio.app import create_app
from onderwijsregio.auth.dependencies import Public
from onderwijsregio.config import Settings
from tests.conftest import API, Tenant

ENVELOPE_KEYS = {"statusCode", "message", "data", "meta"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ENVELOPE_KEYS | {"error"}, body
    assert body["statusCode"] == status and body["data"] is None
    assert body["error"]["code"] == code, body
    assert body["meta"]["requestId"] == response.headers["x-request-id"]
    assert isinstance(body["message"], str) and body["message"]
    return dict(body["error"])


async def test_success_envelope_has_request_id_and_no_store(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.get(f"{API}/regions/me", headers=tenant.headers())
    body = response.json()
    assert response.status_code == 200
    assert set(body) == ENVELOPE_KEYS
    assert body["statusCode"] == 200 and body["data"]["id"] == tenant.id
    assert body["meta"] == {"sandboxEnabled": False, "requestId": response.headers["x-request-id"]}
    assert re.match(r"^req_[0-9a-f]{24}$", body["meta"]["requestId"])
    assert response.headers["cache-control"] == "no-store"


async def test_sane_request_id_is_echoed_and_odd_one_replaced(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    echoed = await client.get(f"{API}/regions/me", headers=tenant.headers(**{"x-request-id": "crm-42.a:b"}))
    assert echoed.headers["x-request-id"] == "crm-42.a:b" == echoed.json()["meta"]["requestId"]
    for odd in ("has space", "<script>", "x" * 200):
        replaced = await client.get(f"{API}/regions/me", headers=tenant.headers(**{"x-request-id": odd}))
        assert replaced.headers["x-request-id"].startswith("req_")
        assert replaced.json()["meta"]["requestId"] == replaced.headers["x-request-id"]


async def test_unknown_route_is_enveloped_404(client: httpx.AsyncClient) -> None:
    for path in (f"{API}/no-such-thing", "/nowhere", "/api/sandbox/no-such-thing"):
        assert_error(await client.get(path), 404, "not_found")


async def test_unknown_route_in_sandbox_mode_says_so(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/sandbox/no-such-thing")
    assert response.json()["meta"]["sandboxEnabled"] is True


async def test_wrong_method_is_405_with_every_allowed_method(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for path, allowed in (("/regions", "GET, POST"), ("/api-keys", "GET, POST"), ("/admin/queue", "GET")):
        response = await client.put(f"{API}{path}", headers=tenant.headers(), json={})
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allowed
    root = await client.post("/health")
    assert_error(root, 405, "method_not_allowed")
    assert root.headers["allow"] == "GET"


async def test_malformed_json_is_400_invalid_json(client: httpx.AsyncClient, admin_key: str) -> None:
    response = await client.post(
        f"{API}/regions",
        content=b'{"name": "Regio',
        headers={"x-api-key": admin_key, "content-type": "application/json"},
    )
    assert_error(response, 400, "invalid_json")


async def test_non_json_body_is_415(client: httpx.AsyncClient, admin_key: str) -> None:
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"x-api-key": admin_key}
        if content_type:
            headers["content-type"] = content_type
        response = await client.post(f"{API}/regions", content=b"name=Regio", headers=headers)
        assert_error(response, 415, "unsupported_media_type")


async def test_json_variants_are_accepted(client: httpx.AsyncClient, admin_key: str) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = await client.post(
            f"{API}/regions",
            content=b'{"name": "Regio Variant"}',
            headers={"x-api-key": admin_key, "content-type": content_type},
        )
        assert response.status_code == 201, response.text


async def test_validation_issues_have_paths_codes_and_messages(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    body = {"name": "", "customFields": [{"key": "ok", "label": "OK", "type": "string"}, {"label": "x"}]}
    error = assert_error(
        await client.post(f"{API}/regions", json=body, headers={"x-api-key": admin_key}),
        422,
        "validation_failed",
    )
    issues = error["issues"]
    assert isinstance(issues, list)
    paths = [tuple(i["path"]) for i in issues]
    assert ("name",) in paths
    assert ("customFields", "1", "key") in paths and ("customFields", "1", "type") in paths
    assert all(isinstance(i["code"], str) and isinstance(i["message"], str) for i in issues)


async def test_query_parameter_errors_are_400(client: httpx.AsyncClient, admin_key: str) -> None:
    for size in ("0", "101", "veel"):
        response = await client.get(
            f"{API}/regions", params={"pageSize": size}, headers={"x-api-key": admin_key}
        )
        error = assert_error(response, 400, "bad_request")
        assert error["issues"] and error["issues"][0]["path"] == ["query", "pageSize"]  # type: ignore[index]


async def test_the_nul_character_is_refused_everywhere(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """PostgreSQL cannot store U+0000; both databases refuse it up front instead of failing later."""
    person = {"name": "Jan", "email": "jan@example.org", "privacyConsent": True}
    error = assert_error(
        await client.post(
            f"{API}/candidates",
            json=[person, {**person, "notes": "voor\x00na"}],
            headers=tenant.headers(),
        ),
        422,
        "validation_failed",
    )
    assert error["issues"] == [
        {
            "path": ["1", "notes"],
            "code": "nul_character",
            "message": "Text may not contain the character U+0000",
        }
    ]
    assert_error(
        await client.post(f"{API}/candidates", json={**person, "a\x00": 1}, headers=tenant.headers()),
        422,
        "validation_failed",
    )
    for url in (f"{API}/candidates/find?email=a%00@b.nl", f"{API}/candidates/cand_%00"):
        assert_error(await client.get(url, headers=tenant.headers()), 400, "bad_request")
    # an escaped backslash before "u0000" is ordinary text
    literal = await client.post(
        f"{API}/candidates", json={**person, "notes": "pad\\u0000"}, headers=tenant.headers()
    )
    assert literal.status_code == 202, literal.text


async def test_unhandled_error_is_500_without_internals(settings: Settings) -> None:
    app = create_app(settings, run_workers=False)

    @app.get("/boom", dependencies=[Depends(Public)])
    async def boom() -> None:
        raise RuntimeError("SELECT secret FROM /srv/app/db.py WHERE email='jan@example.org'")

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        response = await http.get("/boom")
    assert_error(response, 500, "internal_error")
    for leak in ("SELECT", "/srv", "jan@example.org", "Traceback", "RuntimeError"):
        assert leak not in response.text


async def test_unhandled_error_leaves_no_personal_data_in_the_log(settings: Settings) -> None:
    from onderwijsregio.logs import JsonFormatter

    app = create_app(settings, run_workers=False)

    person = {"email": "jan.jansen" + "@example.org", "phone": "06" + "12345678"}  # not in any source line

    @app.get("/leak", dependencies=[Depends(Public)])
    async def leak() -> None:
        raise ValueError(f"could not parse {person['email']}, phone {person['phone']}")

    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger = logging.getLogger("onderwijsregio.errors")
    logger.addHandler(handler)
    try:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        async with app.router.lifespan_context(app), http:
            assert (await http.get("/leak")).status_code == 500
    finally:
        logger.removeHandler(handler)
    lines = [JsonFormatter().format(record) for record in records]
    assert lines, "the error was not logged at all"
    assert any("ValueError" in line and "test_envelope.py" in line for line in lines)
    assert not any("jan.jansen" in line or "0612345678" in line for line in lines)
