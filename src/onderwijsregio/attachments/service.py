"""Attachments (contract §3.4): staging inputs at acceptance, fetching URLs, reading and views.

At acceptance a base64 file is decoded, checked and written to storage under its attachment id;
the stored mutation holds a reference to it, never base64. A URL is checked (§2.6) and kept for the
worker, which fetches it ahead of the ordered apply. Either way a `StagedFile` row, written with the
mutation, marks the storage key as in use until the mutation is final.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.attachments.filetypes import NAMES, detect
from onderwijsregio.attachments.models import Attachment, StagedFile
from onderwijsregio.attachments.schemas import FIELDS, MAX_FILE_BYTES
from onderwijsregio.clock import to_rfc3339, utc_now
from onderwijsregio.engine.operations import ItemFailed
from onderwijsregio.errors import NotFound, ValidationFailed, issue
from onderwijsregio.ids import has_shape, new_id
from onderwijsregio.middleware import API_PREFIX, SANDBOX_PREFIX
from onderwijsregio.outbound.client import FetchFailed, fetch
from onderwijsregio.outbound.urls import UrlNotAllowed, UrlPolicy, check_url
from onderwijsregio.scope import Scope, scope_parameters, scoped, scoped_by_parameters
from onderwijsregio.storage.files import FileStore, spooled_file

FETCH_SECONDS = 30.0
MAX_REDIRECTS = 3


def storage_key(scope: Scope, attachment_id: str) -> str:
    """Generated, never the client's filename: region, mode, attachment id."""
    return f"{scope.region_id}/{'sandbox' if scope.sandbox else 'live'}/{attachment_id}"


@dataclass(frozen=True)
class StoredFile:
    content_type: str
    size: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"contentType": self.content_type, "size": self.size, "sha256": self.sha256}


@dataclass
class Staging:
    """What acceptance did to a request's attachment inputs: references for the payload, the files
    already written (removed again unless the mutation is recorded), and the rows that mark them."""

    files: FileStore
    policy: UrlPolicy
    scope: Scope
    written: list[str] = field(default_factory=list)
    rows: list[StagedFile] = field(default_factory=list)
    recorded: bool = False

    async def inputs(self, given: dict[str, Any], path: list[str | int]) -> dict[str, list[dict[str, Any]]]:
        """The attachment fields of one body, each input replaced by its reference."""
        references: dict[str, list[dict[str, Any]]] = {}
        for name in FIELDS:
            for index, attachment in enumerate(given.get(name) or []):
                reference = await self._one(name, attachment, [*path, name, index])
                references.setdefault(name, []).append(reference)
        return references

    async def _one(self, field: str, given: dict[str, Any], path: list[str | int]) -> dict[str, Any]:
        attachment_id = new_id("att")
        key = storage_key(self.scope, attachment_id)
        reference: dict[str, Any] = {"id": attachment_id, "field": field, "filename": given["filename"]}
        if "url" in given:
            await _check_url(given["url"], self.policy, path)
            reference["url"] = given["url"]
        else:
            stored = await _decoded_into_storage(self.files, key, given["base64"], path)
            self.written.append(key)
            reference["stored"] = stored.as_json()
        self.rows.append(
            StagedFile(
                region_id=self.scope.region_id,
                sandbox=self.scope.sandbox,
                attachment_id=attachment_id,
                mutation_id="",  # set once the mutation has its id
                storage_key=key,
                created_at=utc_now(),
            )
        )
        return reference

    def record(self, session: AsyncSession, mutation_id: str) -> None:
        """Submission.on_insert: the rows go in with the mutation."""
        for row in self.rows:
            row.mutation_id = mutation_id
            session.add(row)
        self.recorded = True


@asynccontextmanager
async def staging(files: FileStore, policy: UrlPolicy, scope: Scope) -> AsyncIterator[Staging]:
    """Files written for a request that ends without a recorded mutation (refused, or a replay of an
    earlier one) are removed again at once."""
    staged = Staging(files, policy, scope)
    try:
        yield staged
    finally:
        if not staged.recorded and staged.written:
            await files.delete(staged.written)


async def _check_url(url: str, policy: UrlPolicy, path: list[str | int]) -> None:
    try:
        await check_url(url, policy)
    except UrlNotAllowed as refused:
        raise UrlNotAllowed(
            refused.message, issues=[issue([*path, "url"], "url_not_allowed", refused.message)]
        ) from None


async def _decoded_into_storage(files: FileStore, key: str, text: str, path: list[str | int]) -> StoredFile:
    sink = spooled_file()
    try:
        stored = await asyncio.to_thread(_decode_and_check, text, sink, path)
        await files.put(key, sink)
        return stored
    finally:
        sink.close()


# Decoded a piece at a time (a multiple of 4 characters is exactly 3 bytes per 4): no 10 MiB copy of
# the file is ever held, which also keeps the worker threads' malloc arenas from growing (measured
# in bench/attachments_bench.py).
_BASE64_PIECE = 4 * 256 * 1024


def _decode_and_check(text: str, sink: IO[bytes], path: list[str | int]) -> StoredFile:
    if len(text) % 4:
        raise _refused(path, "invalid_base64", "Not valid base64")
    digest, size = hashlib.sha256(), 0
    for start in range(0, len(text), _BASE64_PIECE):
        try:
            piece = base64.b64decode(text[start : start + _BASE64_PIECE], validate=True)
        except (binascii.Error, ValueError):
            raise _refused(path, "invalid_base64", "Not valid base64") from None
        size += len(piece)
        if size > MAX_FILE_BYTES:
            raise _refused(path, "attachment_too_large", f"A file holds at most {MAX_FILE_BYTES} bytes")
        digest.update(piece)
        sink.write(piece)
    content_type = detect(sink)
    if content_type is None:
        raise _refused(path, "attachment_type_not_allowed", f"Allowed file types: {NAMES}")
    return StoredFile(content_type, size, digest.hexdigest())


def _refused(path: list[str | int], code: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, issues=[issue([*path, "base64"], code, message)])


async def fetch_into_storage(files: FileStore, policy: UrlPolicy, key: str, url: str) -> StoredFile:
    """The worker's prepare stage: fetched (§2.6, ≤ 10 MiB, 30 s, ≤ 3 redirects), typed, stored."""
    sink = spooled_file()
    try:
        try:
            await fetch(
                url,
                sink,
                policy=policy,
                max_bytes=MAX_FILE_BYTES,
                max_redirects=MAX_REDIRECTS,
                time_limit=FETCH_SECONDS,
            )
        except FetchFailed as failure:
            raise ItemFailed(failure.code, failure.message) from None
        stored = await asyncio.to_thread(_typed, sink)
        await files.put(key, sink)
        return stored
    finally:
        sink.close()


def _typed(sink: IO[bytes]) -> StoredFile:
    content_type = detect(sink)
    if content_type is None:
        raise ItemFailed(
            "attachment_type_not_allowed", f"The fetched file is not of an allowed type ({NAMES})"
        )
    sink.seek(0)
    digest, size = hashlib.sha256(), 0
    while chunk := sink.read(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
    if size == 0:
        raise ItemFailed("attachment_type_not_allowed", "The fetched file is empty")
    return StoredFile(content_type, size, digest.hexdigest())


def attachment_view(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "candidateId": attachment.candidate_id,
        "field": attachment.field,
        "filename": attachment.filename,
        "contentType": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
        "createdAt": to_rfc3339(attachment.created_at),
    }


def content_url(scope: Scope, attachment_id: str) -> str:
    """The download path, under /api/sandbox for a sandbox attachment."""
    return f"{SANDBOX_PREFIX if scope.sandbox else API_PREFIX}/attachments/{attachment_id}/content"


async def of_candidates(
    session: AsyncSession, scope: Scope, candidate_ids: Sequence[str]
) -> dict[str, list[Attachment]]:
    """Every attachment of these candidates, oldest first."""
    found: dict[str, list[Attachment]] = {candidate_id: [] for candidate_id in candidate_ids}
    if candidate_ids:
        parameters = {**scope_parameters(scope), "candidate_ids": list(candidate_ids)}
        for attachment in await session.scalars(_ATTACHMENTS_OF_CANDIDATES, parameters):
            found[attachment.candidate_id].append(attachment)
    return found


# Built once: every candidate read runs it.
_ATTACHMENTS_OF_CANDIDATES = (
    scoped_by_parameters(select(Attachment), Attachment)
    .where(Attachment.candidate_id.in_(bindparam("candidate_ids", expanding=True)))
    .order_by(Attachment.candidate_id, Attachment.created_at, Attachment.id)
)


async def find_attachment(session: AsyncSession, scope: Scope, attachment_id: str) -> Attachment:
    attachment = None
    if has_shape(attachment_id, "att"):
        attachment = await session.scalar(
            scoped(select(Attachment), Attachment, scope).where(Attachment.id == attachment_id)
        )
    if attachment is None:
        raise NotFound("Attachment not found")
    return attachment


async def get_attachment(session: AsyncSession, scope: Scope, attachment_id: str) -> dict[str, Any]:
    return attachment_view(await find_attachment(session, scope, attachment_id))


async def content(files: FileStore, attachment: Attachment) -> AsyncIterator[bytes]:
    """The stored bytes, streamed; a file that vanished from storage reads as not found."""
    chunks = files.read(attachment.storage_key)
    try:
        first = await anext(chunks)
    except FileNotFoundError:
        raise NotFound("Attachment not found") from None
    except StopAsyncIteration:
        first = b""

    async def stream() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return stream()


async def ensure_writable(session: AsyncSession, scope: Scope, attachment_id: str) -> None:
    """An attachment that neither exists nor is pending creation (its file staged for an unfinished
    mutation) here → 404 at once."""
    if has_shape(attachment_id, "att"):
        stored = scoped(select(Attachment.id), Attachment, scope).where(Attachment.id == attachment_id)
        staged = scoped(select(StagedFile.attachment_id), StagedFile, scope).where(
            StagedFile.attachment_id == attachment_id
        )
        # Stored looked for again: the file may have been attached between the first two looks.
        if await session.scalar(stored) or await session.scalar(staged) or await session.scalar(stored):
            return
    raise NotFound("Attachment not found")
