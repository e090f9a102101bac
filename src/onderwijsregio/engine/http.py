"""Accepting a write over HTTP (contract §2.1, §2.2, §2.4): options, replay, the 202 answer.

Domain routes build their Submission (after their own checks) and hand it here; this module knows
nothing of candidates or any other domain.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Annotated, Any

import httpx
from fastapi import Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.context import app_context
from onderwijsregio.engine.accept import (
    Acceptance,
    Submission,
    WriteOptions,
    accept,
    find_replay,
    request_hash,
)
from onderwijsregio.envelope import request_state, respond
from onderwijsregio.errors import BadRequest
from onderwijsregio.outbound.urls import MAX_URL_LENGTH, check_url
from onderwijsregio.scope import Scope

_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]{1,255}$")
IDEMPOTENCY_PARAMETER = "idempotencyKey"
# Documented only: a wrong value gets our own 400 or 422 with a clear message, not a generic one.
_IDEMPOTENCY_KEY_SCHEMA: dict[str, Any] = {"minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"}
_CALLBACK_URL_SCHEMA: dict[str, Any] = {
    "format": "uri",
    "minLength": 1,
    "maxLength": MAX_URL_LENGTH,
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
}


async def write_options(
    callback_url: Annotated[
        str | None,
        Query(
            alias="callbackUrl",
            description="Absolute https:// URL to POST the outcome to (§2.5, §2.6)",
            json_schema_extra=_CALLBACK_URL_SCHEMA,
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Query(
            alias="idempotencyKey",
            description="1–255 visible ASCII characters (§2.4)",
            json_schema_extra=_IDEMPOTENCY_KEY_SCHEMA,
        ),
    ] = None,
    idempotency_header: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Alias of the idempotencyKey parameter",
            json_schema_extra=_IDEMPOTENCY_KEY_SCHEMA,
        ),
    ] = None,
) -> WriteOptions:
    if (
        idempotency_key is not None
        and idempotency_header is not None
        and idempotency_key != idempotency_header
    ):
        raise BadRequest("idempotencyKey and the Idempotency-Key header differ")
    key = idempotency_key if idempotency_key is not None else idempotency_header
    if key is not None and not _VISIBLE_ASCII.match(key):
        raise BadRequest("An idempotency key is 1-255 visible ASCII characters")
    return WriteOptions(idempotency_key=key, callback_url=callback_url)


async def accept_write(
    request: Request,
    caller: RegionContext,
    session: AsyncSession,
    options: WriteOptions,
    submit: Callable[[], Awaitable[Submission]],
    *,
    scope: Scope | None = None,
) -> Response:
    """The 202 for a write: a replay when the key was seen, else the route's checks, then acceptance."""
    scope = scope or caller.scope
    context = app_context(request)
    fingerprint = await _fingerprint(request, context.engine.box.fingerprint_key)
    # Both before the write transaction begins: a slow DNS answer must not hold the database's
    # write lock (SQLite has only one).
    if options.idempotency_key is not None:
        async with context.sessions() as reading:
            earlier = await find_replay(reading, scope, options.idempotency_key, fingerprint)
        if earlier is not None:
            return _accepted(request, scope, earlier)
    if options.callback_url is not None:
        await check_url(options.callback_url, context.url_policy)
        # Stored as httpx will send it, so the signed path is the path the receiver sees.
        options = replace(options, callback_url=str(httpx.URL(options.callback_url)))
    submission = await submit()
    acceptance = await accept(
        session,
        scope,
        submission,
        options,
        fingerprint=fingerprint,
        max_queued=caller.region.max_queued_mutations,
        waker=context.engine.mutations_waker,
    )
    return _accepted(request, scope, acceptance)


Exists = Callable[[AsyncSession, Scope, str], Awaitable[None]]


async def accept_write_to_one(
    request: Request,
    caller: RegionContext,
    session: AsyncSession,
    options: WriteOptions,
    change: tuple[str, str, dict[str, Any]],
    ensure_exists: Exists,
) -> Response:
    """A write to one existing resource: (operation, resource id, details); 404 at once when absent."""
    operation, resource_id, details = change

    async def submission() -> Submission:
        await ensure_exists(session, caller.scope, resource_id)
        return Submission(operation, [{"id": resource_id, **details}], [resource_id])

    return await accept_write(request, caller, session, options, submission)


async def _fingerprint(request: Request, key: bytes) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != IDEMPOTENCY_PARAMETER]
    return request_hash(key, request.method, request.scope["path"], query, await request.body())


def _accepted(request: Request, scope: Scope, acceptance: Acceptance) -> Response:
    request_state(request)["sandbox"] = scope.sandbox
    headers = {"location": acceptance.data["statusUrl"], "retry-after": "1"}
    if acceptance.replayed:
        headers["idempotent-replayed"] = "true"
    return respond(request, acceptance.data, "Mutation accepted", 202, headers=headers)
