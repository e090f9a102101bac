"""The promise of §3.1, both ways, with Hypothesis: what the region's schema allows the API accepts, and
what the schema refuses the API refuses — for a region with custom fields of every type.

Valid payloads come from the schema itself (hypothesis-jsonschema); only the checks the schema lists as
not expressible (its `description`) are brought within bounds before sending. Invalid payloads are valid
ones with one part replaced by arbitrary JSON; an independent JSON Schema validator gives the schema's
verdict, and the API must give the same one.
"""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import Callable
from datetime import date
from functools import lru_cache
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator

from tests.conftest import Tenant
from tests.test_candidate_validation import DEFINITIONS

API = "/api/v2"
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # CI runs the same examples every time; a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Properties whose remaining rules the schema can only describe (see its `description`); a changed
# value there may be refused for a reason the schema does not express.
NOT_EXPRESSED = {
    "email",
    "phone",
    "dateOfBirth",
    "linkedinUrl",
    "workEmail",
    "portfolio",
    "availableFrom",
    "url",
    "base64",
}
# A file of an allowed type, and a URL the tests' URL policy allows (it is not fetched at acceptance).
PDF_BASE64 = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
FILE_URL = "http://127.0.0.1:9999/cv.pdf"
TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=30)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture
async def region_with_every_field_type(make_tenant: Any, client: httpx.AsyncClient) -> Tenant:
    tenant: Tenant = await make_tenant(
        customFields=DEFINITIONS,
        rateLimit={"requestsPerSecond": 1000, "burst": 1000, "keyRequestsPerSecond": 1000, "keyBurst": 1000},
    )
    return tenant


async def schema_of(client: httpx.AsyncClient, tenant: Tenant, operation: str) -> dict[str, Any]:
    answer = await client.get(f"{API}/schema", params={"operation": operation}, headers=tenant.headers())
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()["data"]
    return document


@lru_cache(maxsize=4)
def payloads(schema_json: bytes) -> st.SearchStrategy[dict[str, Any]]:
    return from_schema(orjson.loads(schema_json)).map(within_unexpressed_rules)


def within_unexpressed_rules(generated: Any) -> dict[str, Any]:
    """Brings the values the schema cannot fully describe within the rules its description lists."""
    payload: dict[str, Any] = without_nul(generated)  # the schema's root is an object
    if "email" in payload:
        payload["email"] = "kandidaat@example.org"
    if payload.get("phone") is not None:
        payload["phone"] = "06-12345678"
    if payload.get("dateOfBirth") is not None:
        payload["dateOfBirth"] = "1990-03-24"
    if payload.get("linkedinUrl") is not None:
        payload["linkedinUrl"] = "https://www.linkedin.com/in/kandidaat"
    fields = payload.get("customFields") or {}
    replacements = {
        "workEmail": "werk@example.org",
        "portfolio": "https://example.org/portfolio",
        "availableFrom": date.today().isoformat(),
    }
    for key, value in replacements.items():
        if fields.get(key) is not None:
            fields[key] = value
    for name in ("curriculumVitae", "otherAttachments"):
        for attachment in payload.get(name) or []:
            attachment.update({"url": FILE_URL} if "url" in attachment else {"base64": PDF_BASE64})
    return payload


def without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "?")  # keeps the length the schema asked for
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    return value


def paths_in(payload: dict[str, Any]) -> list[tuple[str | int, ...]]:
    """Every place a value can be replaced or added: top-level, custom fields, inline interactions."""
    paths: list[tuple[str | int, ...]] = [(name,) for name in payload]
    paths += [("customFields", key) for key in payload.get("customFields") or {}]
    for index, interaction in enumerate(payload.get("interactions") or []):
        paths += [("interactions", index, key) for key in interaction]
    return paths


def replaced(payload: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    target: Any = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return changed


def removed(payload: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    target: Any = changed
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return changed


@st.composite
def broken(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """A valid payload with one part replaced, removed or added; returns it and the part's name."""
    payload = draw(valid)
    paths = paths_in(payload)
    kind = draw(st.sampled_from(["replace", "remove", "add"]))
    if kind == "add" or not paths:
        parent = draw(st.sampled_from([(), ("customFields",)] if "customFields" in payload else [()]))
        name = draw(st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=12))
        return replaced(payload, (*parent, name), draw(ANY_JSON)), name
    path = draw(st.sampled_from(paths))
    if kind == "remove":
        return removed(payload, path), str(path[-1])
    return replaced(payload, path, draw(ANY_JSON)), str(path[-1])


def api_verdicts(client: httpx.AsyncClient, tenant: Tenant) -> Callable[[str, str, Any], bool]:
    """A blocking `accepted = verdict(method, url, body)` for Hypothesis's (synchronous) examples, which
    run in a thread while the test's event loop serves the requests."""
    loop = asyncio.get_running_loop()

    async def verdict(method: str, url: str, body: Any) -> bool:
        answer = await client.request(method, url, json=body, headers=tenant.headers())
        assert answer.status_code in (202, 422), answer.text
        if answer.status_code == 422:
            assert answer.json()["error"]["code"] in ("validation_failed", "url_not_allowed"), answer.text
        return answer.status_code == 202

    return lambda method, url, body: asyncio.run_coroutine_threadsafe(
        verdict(method, url, body), loop
    ).result()


async def run_examples(check: Callable[[], None]) -> None:
    await asyncio.to_thread(check)


async def test_what_the_create_schema_allows_is_accepted(
    client: httpx.AsyncClient, region_with_every_field_type: Tenant
) -> None:
    tenant = region_with_every_field_type
    verdict = api_verdicts(client, tenant)
    schema = await schema_of(client, tenant, "create")

    @EXAMPLES
    @given(payload=payloads(orjson.dumps(schema)))
    def check(payload: dict[str, Any]) -> None:
        accepted = verdict("POST", f"{API}/candidates", payload)
        assert accepted, f"the schema allows {payload!r} but the API refused it"

    await run_examples(check)


async def test_create_agrees_with_the_schema_on_changed_payloads(
    client: httpx.AsyncClient, region_with_every_field_type: Tenant
) -> None:
    tenant = region_with_every_field_type
    verdict = api_verdicts(client, tenant)
    schema = await schema_of(client, tenant, "create")
    validator = Draft202012Validator(schema)

    seen: set[bool] = set()

    @EXAMPLES
    @given(change=broken(payloads(orjson.dumps(schema))))
    def check(change: tuple[dict[str, Any], str]) -> None:
        payload, part = change
        by_schema = validator.is_valid(payload)
        by_api = verdict("POST", f"{API}/candidates", payload)
        seen.add(by_schema)
        if by_schema and part in NOT_EXPRESSED:
            return  # the API may refuse it for a rule the schema only describes
        assert by_api == by_schema, f"schema says {by_schema}, API says {by_api} for {payload!r}"

    await run_examples(check)
    assert seen == {True, False}, "the changes should include payloads the schema allows and refuses"


async def test_update_agrees_with_the_schema_both_ways(
    client: httpx.AsyncClient, region_with_every_field_type: Tenant
) -> None:
    tenant = region_with_every_field_type
    created = await client.post(
        f"{API}/candidates",
        json={
            "name": "Jan",
            "email": "jan@example.org",
            "privacyConsent": True,
            "customFields": {"favoriteSubject": "Wiskunde"},
        },
        headers=tenant.headers(),
    )
    assert created.status_code == 202, created.text
    url = f"{API}/candidates/{created.json()['data']['resourceIds'][0]}"
    verdict = api_verdicts(client, tenant)
    schema = await schema_of(client, tenant, "update")
    validator = Draft202012Validator(schema)
    valid = payloads(orjson.dumps(schema))
    seen: set[bool] = set()

    @EXAMPLES
    @given(payload=valid, change=broken(valid))
    def check(payload: dict[str, Any], change: tuple[dict[str, Any], str]) -> None:
        assert verdict("PATCH", url, payload), f"refused {payload!r}"
        changed, part = change
        by_schema = validator.is_valid(changed)
        by_api = verdict("PATCH", url, changed)
        seen.add(by_schema)
        if not (by_schema and part in NOT_EXPRESSED):
            assert by_api == by_schema, f"schema says {by_schema}, API says {by_api} for {changed!r}"

    await run_examples(check)
    assert seen == {True, False}, "the changes should include payloads the schema allows and refuses"
