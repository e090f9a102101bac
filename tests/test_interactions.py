"""Interactions (contract §3.3): added, listed newest first, changed and removed through the engine."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Tenant
from tests.engine_helpers import final
from tests.test_candidates import create, person, run
from tests.test_envelope import assert_error

API = "/api/v2"


def contact(at: str, **changes: Any) -> dict[str, Any]:
    return {"type": "Telefonisch", "performedAt": at, "title": "Gesprek", **changes}


async def test_interactions_round_trip(client: httpx.AsyncClient, tenant: Tenant) -> None:
    [cid] = await create(client, tenant, person())
    stamps = ["2025-01-05T09:00:00Z", "2026-02-01T12:30:00Z", "2024-11-20T08:00:00Z"]
    added = await client.post(
        f"{API}/candidates/{cid}/interactions", json=[contact(s) for s in stamps], headers=tenant.headers()
    )
    assert added.status_code == 202
    ids = added.json()["data"]["resourceIds"]
    assert (await final(client, tenant, added.json()["data"]["mutationId"]))["succeededCount"] == 3
    listed: list[str] = []
    params: dict[str, str | int] = {"pageSize": 2}
    while True:
        page = (
            await client.get(f"{API}/candidates/{cid}/interactions", params=params, headers=tenant.headers())
        ).json()
        listed += [i["performedAt"] for i in page["data"]]
        if page["meta"]["cursor"] is None:
            break
        params["cursor"] = page["meta"]["cursor"]
    assert listed == ["2026-02-01T12:30:00.000Z", "2025-01-05T09:00:00.000Z", "2024-11-20T08:00:00.000Z"]
    done = await run(client, tenant, "PATCH", f"/interactions/{ids[0]}", {"summary": "Nieuw", "title": None})
    assert done["results"][0]["action"] == "updated"
    changed = (await client.get(f"{API}/interactions/{ids[0]}", headers=tenant.headers())).json()["data"]
    assert changed["summary"] == "Nieuw" and changed["title"] is None and changed["type"] == "Telefonisch"
    assert (await run(client, tenant, "DELETE", f"/interactions/{ids[0]}"))["results"][0][
        "action"
    ] == "deleted"
    assert_error(await client.get(f"{API}/interactions/{ids[0]}", headers=tenant.headers()), 404, "not_found")


async def test_interactions_are_checked_and_confined(client: httpx.AsyncClient, make_tenant: Any) -> None:
    owner, other = await make_tenant(), await make_tenant()
    [cid] = await create(client, owner, person(interactions=[contact("2026-03-24T10:00:00Z")]))
    [iid] = [
        i["id"]
        for i in (await client.get(f"{API}/candidates/{cid}/interactions", headers=owner.headers())).json()[
            "data"
        ]
    ]
    for bad in (
        [],
        [contact("gisteren")],
        [contact("2026-03-24T10:00:00Z", durationMinutes=-1)],
        [contact("2026-03-24T10:00:00Z", candidateId=cid)],
        [contact("2026-03-24T10:00:00Z")] * 11,
    ):
        response = await client.post(
            f"{API}/candidates/{cid}/interactions", json=bad, headers=owner.headers()
        )
        assert_error(response, 422, "validation_failed")
    assert_error(
        await client.patch(f"{API}/interactions/{iid}", json={"type": None}, headers=owner.headers()),
        422,
        "validation_failed",
    )
    for method, path in (
        ("GET", f"/interactions/{iid}"),
        ("PATCH", f"/interactions/{iid}"),
        ("DELETE", f"/interactions/{iid}"),
        ("GET", f"/candidates/{cid}/interactions"),
        ("POST", f"/candidates/{cid}/interactions"),
    ):
        body = (
            {"title": "x"}
            if method == "PATCH"
            else [contact("2026-03-24T10:00:00Z")]
            if method == "POST"
            else None
        )
        assert_error(
            await client.request(method, f"{API}{path}", json=body, headers=other.headers()), 404, "not_found"
        )
    assert (await client.get(f"{API}/mutations", headers=other.headers())).json()["data"] == []
