"""Attachments (contract §3.4, §2.6): inputs checked at acceptance, URLs fetched by the worker,
files typed by their bytes, stored and streamed back, and removed with what owns them."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from onderwijsregio.attachments.filetypes import (
    ALLOWED,
    DOC,
    DOCX,
    JPEG,
    ODT,
    PDF,
    PNG,
    RTF,
    TXT,
    WEBP,
    detect,
)
from onderwijsregio.attachments.routes import content_disposition
from onderwijsregio.config import Settings
from tests import attachment_files as files
from tests.conftest import Tenant
from tests.engine_helpers import final
from tests.receiver import Receiver, Reply
from tests.test_candidates import create, person, run
from tests.test_envelope import assert_error

API = "/api/v2"
MiB = 1024 * 1024


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def stored_files(settings: Settings, tenant: Tenant) -> dict[str, bytes]:
    """Every file the storage holds for this region (a test-only look at the directory)."""
    root = Path(settings.storage_url.removeprefix("file://")) / tenant.id
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def add(
    client: httpx.AsyncClient, tenant: Tenant, candidate_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    return await run(client, tenant, "POST", f"/candidates/{candidate_id}/attachments", body)


def test_types_are_told_by_the_bytes() -> None:
    samples = {
        PDF: files.pdf(),
        PNG: files.png(),
        JPEG: files.jpeg(),
        WEBP: files.webp(),
        RTF: files.rtf(),
        TXT: files.txt(),
        DOC: files.doc(),
        DOCX: files.docx(),
        ODT: files.odt(),
    }
    assert sorted(samples) == sorted(ALLOWED)
    for expected, data in samples.items():
        assert detect(io.BytesIO(data)) == expected, expected
    refused = {
        "executable": files.exe(),
        "plain zip": files.plain_zip(),
        "OLE2 without Word": files.doc().replace("WordDocument".encode("utf-16-le"), bytes(24)),
        "binary": bytes(range(256)),
        "empty": b"",
        "broken zip": b"PK\x03\x04" + bytes(100),
        "latin-1 text": "café".encode("latin-1"),
    }
    for label, data in refused.items():
        assert detect(io.BytesIO(data)) is None, label


def test_a_zip_bomb_is_typed_without_being_extracted() -> None:
    bomb = files.zip_bomb_docx()
    assert len(bomb) < MiB  # 200 MiB inflated
    started = time.perf_counter()
    assert detect(io.BytesIO(bomb)) is None  # no Word content type in its first MiB of zeros
    assert time.perf_counter() - started < 5  # generous; reading 200 MiB would take far longer here


def test_the_download_name_is_safe() -> None:
    assert content_disposition("cv.pdf") == "attachment; filename=\"cv.pdf\"; filename*=UTF-8''cv.pdf"
    evil = content_disposition('../../etc/pass"wd\r\nX-Evil: 1.pdf')
    assert "\r" not in evil and "\n" not in evil and "../" not in evil
    assert evil.startswith('attachment; filename="pass_wd__X-Evil: 1.pdf"')
    assert "filename*=UTF-8''J%C3%BCrgen.pdf" in content_disposition("Jürgen.pdf")
    assert content_disposition("J\u00fcrgen.pdf").startswith('attachment; filename="J_rgen.pdf"')


async def test_a_base64_file_round_trips(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    data = files.docx("Curriculum vitae")
    [cid] = await create(
        client, tenant, person(curriculumVitae=[files.base64_input(data, "Mijn CV (2026).docx")])
    )
    candidate = (await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())).json()["data"]
    [attachment] = candidate["curriculumVitae"]
    assert candidate["otherAttachments"] == []
    assert attachment == {
        "id": attachment["id"],
        "candidateId": cid,
        "field": "curriculumVitae",
        "filename": "Mijn CV (2026).docx",
        "contentType": DOCX,  # detected, whatever was declared
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "createdAt": attachment["createdAt"],
    }
    metadata = await client.get(f"{API}/attachments/{attachment['id']}", headers=tenant.headers())
    assert metadata.json()["data"] == attachment
    download = await client.get(f"{API}/attachments/{attachment['id']}/content", headers=tenant.headers())
    assert download.status_code == 200 and download.content == data
    assert download.headers["content-type"] == DOCX
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-disposition"].startswith('attachment; filename="Mijn CV (2026).docx"')
    assert download.headers["content-length"] == str(len(data))
    # stored under a generated name; the mutation keeps a reference, never the base64
    assert list(stored_files(settings, tenant).values()) == [data]
    assert "Mijn CV" not in str(stored_files(settings, tenant))
    exported = (await client.get(f"{API}/candidates/{cid}/export", headers=tenant.headers())).json()["data"]
    assert exported["attachments"] == [
        attachment | {"contentUrl": f"{API}/attachments/{attachment['id']}/content"}
    ]


async def test_adding_appends_in_request_order(client: httpx.AsyncClient, tenant: Tenant) -> None:
    [cid] = await create(
        client, tenant, person(otherAttachments=[files.base64_input(files.png(), "foto.png")])
    )
    body = {
        "otherAttachments": [files.base64_input(files.txt(), "brief.txt")],
        "curriculumVitae": [
            files.base64_input(files.pdf(), "cv.pdf"),
            files.base64_input(files.rtf(), "cv.rtf"),
        ],
    }
    response = await client.post(f"{API}/candidates/{cid}/attachments", json=body, headers=tenant.headers())
    assert response.status_code == 202, response.text
    ids = response.json()["data"]["resourceIds"]
    done = await final(client, tenant, response.json()["data"]["mutationId"])
    assert done["status"] == "succeeded" and done["results"][0]["action"] == "added"
    candidate = (await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())).json()["data"]
    assert [a["id"] for a in candidate["curriculumVitae"]] == ids[:2]  # curriculumVitae first
    assert [a["filename"] for a in candidate["otherAttachments"]] == ["foto.png", "brief.txt"]
    assert candidate["otherAttachments"][1]["id"] == ids[2]
    listed = await client.get(
        f"{API}/candidates", params={"fields": "curriculumVitae"}, headers=tenant.headers()
    )
    assert [c["curriculumVitae"] for c in listed.json()["data"]] == [candidate["curriculumVitae"]]


async def test_bad_inputs_are_refused_at_once_and_leave_no_file(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    [cid] = await create(client, tenant, person())
    before = len((await client.get(f"{API}/mutations", headers=tenant.headers())).json()["data"])
    url = f"{API}/candidates/{cid}/attachments"
    good = files.base64_input(files.pdf())
    cases: list[tuple[Any, str, str]] = [
        ({}, "validation_failed", ""),
        ({"curriculumVitae": []}, "validation_failed", "too_short"),
        ({"curriculumVitae": [good] * 6}, "validation_failed", "too_long"),
        ({"curriculumVitae": None}, "validation_failed", ""),
        ({"curriculumVitae": [good], "photos": [good]}, "validation_failed", "extra_forbidden"),
        (
            {"curriculumVitae": [{**good, "base64": "dit is geen base64!"}]},
            "validation_failed",
            "invalid_base64",
        ),
        (
            {"curriculumVitae": [files.base64_input(files.exe())]},
            "validation_failed",
            "attachment_type_not_allowed",
        ),
        # a good file first: it was written at once, and must be gone again after the refusal
        (
            {"curriculumVitae": [good, files.base64_input(files.exe())]},
            "validation_failed",
            "attachment_type_not_allowed",
        ),
        (
            {"curriculumVitae": [{"url": "http://10.0.0.1/cv.pdf", "filename": "cv.pdf"}]},
            "url_not_allowed",
            "url_not_allowed",
        ),
        (
            {"curriculumVitae": [{"url": "ftp://example.org/cv.pdf", "filename": "cv.pdf"}]},
            "url_not_allowed",
            "url_not_allowed",
        ),
        ({"curriculumVitae": [{"url": "https://example.org/cv.pdf"}]}, "validation_failed", ""),
        ({"curriculumVitae": [{**good, "url": "https://example.org/cv.pdf"}]}, "validation_failed", ""),
    ]
    for body, code, issue_code in cases:
        error = assert_error(await client.post(url, json=body, headers=tenant.headers()), 422, code)
        if issue_code:
            assert issue_code in str(error["issues"]), (body, error)
    too_big = files.pdf() + bytes(10 * MiB)
    assert_error(
        await client.post(
            url, json={"curriculumVitae": [files.base64_input(too_big)]}, headers=tenant.headers()
        ),
        422,
        "validation_failed",
    )
    assert_error(
        await client.post(
            f"{API}/candidates/cand_01ZZZZZZZZZZZZZZZZZZZZZZZZ/attachments",
            json={"curriculumVitae": [good]},
            headers=tenant.headers(),
        ),
        404,
        "not_found",
    )
    assert_error(
        await client.patch(
            f"{API}/candidates/{cid}", json={"curriculumVitae": [good]}, headers=tenant.headers()
        ),
        422,
        "validation_failed",
    )
    assert len((await client.get(f"{API}/mutations", headers=tenant.headers())).json()["data"]) == before
    assert stored_files(settings, tenant) == {}


async def test_a_url_is_fetched_by_the_worker(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, settings: Settings
) -> None:
    data = files.odt()
    target = receiver.serve("/files/cv.odt", Reply(200, data, {"content-type": "application/octet-stream"}))
    # three redirects are followed, each checked again
    hops = [receiver.serve(f"/hop{n}", Reply(302, b"", {"location": f"/hop{n + 1}"})) for n in range(2)]
    receiver.serve("/hop2", Reply(301, b"", {"location": target}))
    [cid] = await create(client, tenant, person(curriculumVitae=[{"url": hops[0], "filename": "cv.odt"}]))
    assert receiver.gets("/files/cv.odt") == 1
    [attachment] = (await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())).json()["data"][
        "curriculumVitae"
    ]
    assert attachment["contentType"] == ODT and attachment["sha256"] == hashlib.sha256(data).hexdigest()
    content = await client.get(f"{API}/attachments/{attachment['id']}/content", headers=tenant.headers())
    assert content.content == data
    assert list(stored_files(settings, tenant).values()) == [data]


async def test_a_url_that_cannot_be_used_fails_its_item(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, settings: Settings
) -> None:
    [cid] = await create(client, tenant, person(city="Zwolle"))
    receiver.serve("/exe", Reply(200, files.exe()))
    receiver.serve("/missing", Reply(404, b"weg"))
    receiver.serve("/huge", Reply(200, files.pdf() + bytes(10 * MiB), with_length=False))
    receiver.serve("/declared", Reply(200, files.pdf() + bytes(11 * MiB)))
    receiver.serve("/to-metadata", Reply(302, b"", {"location": "http://169.254.169.254/latest/meta-data"}))
    for n in range(4):
        receiver.serve(f"/loop{n}", Reply(302, b"", {"location": f"/loop{n + 1}"}))
    receiver.serve("/loop4", Reply(200, files.pdf()))
    expected = {
        "/exe": "attachment_type_not_allowed",
        "/missing": "attachment_fetch_failed",
        "/huge": "attachment_too_large",
        "/declared": "attachment_too_large",
        "/to-metadata": "attachment_fetch_failed",
        "/loop0": "attachment_fetch_failed",  # a fourth redirect
    }
    for path, code in expected.items():
        done = await add(
            client, tenant, cid, {"otherAttachments": [{"url": receiver.url(path), "filename": "x.pdf"}]}
        )
        assert done["status"] == "failed" and done["results"][0]["error"]["code"] == code, (path, done)
    # a create whose file fails leaves no candidate; an upsert whose file fails leaves it as it was
    created = await client.post(
        f"{API}/candidates",
        json=person(otherAttachments=[{"url": receiver.url("/exe"), "filename": "x.pdf"}]),
        headers=tenant.headers(),
    )
    assert (await final(client, tenant, created.json()["data"]["mutationId"]))["status"] == "failed"
    missing = created.json()["data"]["resourceIds"][0]
    assert_error(await client.get(f"{API}/candidates/{missing}", headers=tenant.headers()), 404, "not_found")
    email = (await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())).json()["data"]["email"]
    upsert = await run(
        client,
        tenant,
        "POST",
        "/candidates/upsert",
        person(
            email=email,
            city="Kampen",
            curriculumVitae=[{"url": receiver.url("/missing"), "filename": "x.pdf"}],
        ),
    )
    assert upsert["status"] == "failed"
    after = (await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())).json()["data"]
    assert after["city"] == "Zwolle" and after["curriculumVitae"] == [] and after["otherAttachments"] == []
    assert stored_files(settings, tenant) == {}, "a failed item left a file behind"


async def test_removal_erasure_and_reset_remove_the_files(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    [kept, erased] = await create(
        client,
        tenant,
        person(curriculumVitae=[files.base64_input(files.pdf("kept"))]),
        person(otherAttachments=[files.base64_input(files.pdf("e1")), files.base64_input(files.txt("e2"))]),
    )
    assert len(stored_files(settings, tenant)) == 3
    kept_file = (await client.get(f"{API}/candidates/{kept}", headers=tenant.headers())).json()["data"][
        "curriculumVitae"
    ][0]["id"]
    removed = await run(client, tenant, "DELETE", f"/attachments/{kept_file}")
    assert removed["results"][0] == {**removed["results"][0], "action": "removed", "resourceId": kept_file}
    assert_error(
        await client.get(f"{API}/attachments/{kept_file}", headers=tenant.headers()), 404, "not_found"
    )
    assert_error(
        await client.get(f"{API}/attachments/{kept_file}/content", headers=tenant.headers()), 404, "not_found"
    )
    assert_error(
        await client.delete(f"{API}/attachments/{kept_file}", headers=tenant.headers()), 404, "not_found"
    )
    assert len(stored_files(settings, tenant)) == 2
    await run(client, tenant, "DELETE", f"/candidates/{erased}")
    assert stored_files(settings, tenant) == {}
    sandbox = "/api/sandbox"
    [in_sandbox] = await create(
        client, tenant, person(curriculumVitae=[files.base64_input(files.pdf())]), prefix=sandbox
    )
    assert any(k.startswith("sandbox/") for k in stored_files(settings, tenant))
    reset = await client.post(f"{sandbox}/sandbox/reset", headers=tenant.headers())
    assert (await final(client, tenant, reset.json()["data"]["mutationId"], sandbox=True))[
        "status"
    ] == "succeeded"
    assert not any(k.startswith("sandbox/") for k in stored_files(settings, tenant))
    assert_error(
        await client.get(f"{sandbox}/candidates/{in_sandbox}", headers=tenant.headers()), 404, "not_found"
    )


async def _keys(client: httpx.AsyncClient, tenant: Tenant, candidate_id: str) -> list[str]:
    data = (await client.get(f"{API}/candidates/{candidate_id}", headers=tenant.headers())).json()["data"]
    return [a["id"] for a in data["curriculumVitae"] + data["otherAttachments"]]


async def test_other_regions_never_reach_an_attachment(
    client: httpx.AsyncClient, tenant: Tenant, make_tenant: Any
) -> None:
    [cid] = await create(client, tenant, person(curriculumVitae=[files.base64_input(files.pdf())]))
    [aid] = await _keys(client, tenant, cid)
    other: Tenant = await make_tenant()
    for method, path in (
        ("GET", f"/attachments/{aid}"),
        ("GET", f"/attachments/{aid}/content"),
        ("DELETE", f"/attachments/{aid}"),
        ("POST", f"/candidates/{cid}/attachments"),
    ):
        body = {"curriculumVitae": [files.base64_input(files.pdf())]} if method == "POST" else None
        assert_error(
            await client.request(method, f"{API}{path}", json=body, headers=other.headers()), 404, "not_found"
        )
    # nor does this region's sandbox see its live files
    assert_error(
        await client.get(f"/api/sandbox/attachments/{aid}", headers=tenant.headers()), 404, "not_found"
    )
