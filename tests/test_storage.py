"""Both file stores keep the same promises: a local directory and S3 (a real emulator on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from onderwijsregio.storage.files import CHUNK_BYTES, FileStore, LocalFileStore, file_store, spooled_file
from tests import attachment_files as files
from tests.live import environment, fresh_database, run_cli, serve
from tests.s3 import S3Emulator, s3_emulator

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def emulator() -> Iterator[S3Emulator]:
    with s3_emulator() as running:
        yield running


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, emulator: S3Emulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FileStore]:
    if request.param == "local":
        yield file_store(f"file://{tmp_path}/files")
        return
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    yield file_store(f"s3://{emulator.new_bucket()}/attachments")


async def read_all(store: FileStore, key: str) -> tuple[bytes, int]:
    """The bytes, and the largest chunk they came in."""
    data, largest = b"", 0
    async for chunk in store.read(key):
        data += chunk
        largest = max(largest, len(chunk))
    return data, largest


async def test_put_read_list_delete(store: FileStore) -> None:
    big = os.urandom(10 * MiB)
    source = spooled_file()
    source.write(big)
    await store.put("reg_1/live/att_1", source)
    small = spooled_file()
    small.write(b"klein")
    await store.put("reg_1/sandbox/att_2", small)
    data, largest = await read_all(store, "reg_1/live/att_1")
    assert hashlib.sha256(data).digest() == hashlib.sha256(big).digest()
    assert largest <= CHUNK_BYTES  # streamed, never handed over whole
    listed = {found.key: found.modified_at async for found in store.objects()}
    assert set(listed) == {"reg_1/live/att_1", "reg_1/sandbox/att_2"}
    now = datetime.now(UTC)
    assert all(
        now - timedelta(minutes=5) < moment <= now + timedelta(minutes=5) for moment in listed.values()
    )
    assert [found.key async for found in store.objects("reg_1/sandbox/")] == ["reg_1/sandbox/att_2"]
    await store.delete(["reg_1/live/att_1", "reg_1/live/never-there"])
    assert [found.key async for found in store.objects()] == ["reg_1/sandbox/att_2"]
    with pytest.raises(FileNotFoundError):
        await read_all(store, "reg_1/live/att_1")


async def test_put_replaces(store: FileStore) -> None:
    for content in (b"eerste", b"tweede"):
        source = spooled_file()
        source.write(content)
        await store.put("reg_1/live/att_1", source)
    assert (await read_all(store, "reg_1/live/att_1"))[0] == b"tweede"


async def test_a_key_cannot_leave_the_directory(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "files")
    with pytest.raises(ValueError, match="outside the store"):
        await store.put("../escape", spooled_file())


def test_storage_urls() -> None:
    assert isinstance(file_store("file://./var/attachments"), LocalFileStore)
    for wrong in ("ftp://example.org/files", "s3://"):
        with pytest.raises(ValueError, match="STORAGE_URL must be"):
            file_store(wrong)


async def test_a_server_on_s3_storage_round_trips_an_attachment(tmp_path: Path, emulator: S3Emulator) -> None:
    """The whole path with S3: accepted, applied by the worker, downloaded, removed from the bucket."""
    bucket = emulator.new_bucket()
    with fresh_database(tmp_path) as database:
        env = environment(
            database, ONDERWIJSREGIO_STORAGE_URL=f"s3://{bucket}/files", **emulator.environment()
        )
        assert run_cli(["migrate"], tmp_path, env).returncode == 0
        admin_key = run_cli(["admin", "create-key", "--name", "s3"], tmp_path, env).stdout.split()[-1]
        with serve(tmp_path, env) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                await _round_trip(http, admin_key, emulator, bucket)


async def _round_trip(http: httpx.AsyncClient, admin_key: str, emulator: S3Emulator, bucket: str) -> None:
    region = (
        await http.post("/api/v2/regions", json={"name": "S3"}, headers={"x-api-key": admin_key})
    ).json()
    key = await http.post(
        "/api/v2/api-keys",
        json={"name": "k"},
        headers={"x-api-key": admin_key, "x-region-id": region["data"]["id"]},
    )
    headers = {"x-api-key": key.json()["data"]["key"]}
    data = files.pdf("s3")
    body = {
        "name": "S",
        "email": "s@example.org",
        "privacyConsent": True,
        "curriculumVitae": [files.base64_input(data)],
    }
    created = (await http.post("/api/v2/candidates", json=body, headers=headers)).json()["data"]
    mutation = await _final(http, headers, created["mutationId"])
    assert mutation["status"] == "succeeded", mutation
    candidate = (await http.get(f"/api/v2/candidates/{created['resourceIds'][0]}", headers=headers)).json()[
        "data"
    ]
    attachment = candidate["curriculumVitae"][0]["id"]
    assert (await http.get(f"/api/v2/attachments/{attachment}/content", headers=headers)).content == data
    assert emulator.keys(bucket) == [f"files/{region['data']['id']}/live/{attachment}"]
    removed = (await http.delete(f"/api/v2/attachments/{attachment}", headers=headers)).json()["data"]
    assert (await _final(http, headers, removed["mutationId"]))["status"] == "succeeded"
    assert emulator.keys(bucket) == []


async def _final(http: httpx.AsyncClient, headers: dict[str, str], mutation_id: str) -> dict[str, object]:
    for _ in range(200):
        answer = await http.get(f"/api/v2/mutations/{mutation_id}", headers=headers)
        mutation: dict[str, object] = answer.json()["data"]
        if mutation["status"] in ("succeeded", "failed"):
            return mutation
        await asyncio.sleep(0.05)
    raise AssertionError(f"{mutation_id} not done")
