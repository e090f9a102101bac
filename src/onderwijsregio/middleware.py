"""ASGI middleware: request ids, sandbox mode, body limits, response headers, access logs.

Plain ASGI rather than Starlette's BaseHTTPMiddleware: nothing is buffered, and a 413 can be sent
while the client is still uploading.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import tempfile
import time
from typing import Any

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onderwijsregio.db import database_unavailable
from onderwijsregio.envelope import error_body, request_state
from onderwijsregio.errors import ApiError, InternalError, PayloadTooLarge, ServiceUnavailable
from onderwijsregio.metrics.registry import observe_request

access_log = logging.getLogger("onderwijsregio.access")
error_log = logging.getLogger("onderwijsregio.errors")

API_PREFIX = "/api/v2"
SANDBOX_PREFIX = "/api/sandbox"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

MIB = 1024 * 1024
DEFAULT_BODY_LIMIT = 1 * MIB
ATTACHMENT_BODY_LIMIT = 40 * MIB
# Routes whose bodies may carry base64 attachments (contract §1.4).
_ATTACHMENT_ROUTES = re.compile(r"^/api/v2/candidates(/upsert|/[^/]+/attachments)?/?$")
_LARGE_BODIES_AT_ONCE = 4
LARGE_BODY_WAIT_SECONDS = 10.0


class RequestContextMiddleware:
    """Outermost layer: every answer gets an x-request-id, and nothing unhandled leaves un-enveloped."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = request_state(Request(scope))
        state["request_id"] = _request_id(scope)
        state["sandbox"] = _resolve_sandbox(scope)
        started = time.perf_counter()
        response: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response.update(status=message["status"], started=True)
                message["headers"] = list(message.get("headers", [])) + _extra_headers(state)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as error:
            if not database_unavailable(error):
                # The type and place go to the log (no values: SQL parameters are hidden by the engine);
                # the client learns nothing internal.
                error_log.exception("unhandled error", extra={"request_id": state["request_id"]})
                if not response["started"]:
                    await _send_envelope(scope, send_with_headers, InternalError())
            else:
                # The database away (a restart, a failover) is no bug of ours and passes by itself:
                # the client is told to come back (contract §1.1 `service_unavailable`), not given a
                # 500, and the log gets one line rather than a stack per request.
                error_log.warning(
                    "database unavailable: %s",
                    type(error).__name__,
                    extra={"request_id": state["request_id"]},
                )
                if not response["started"]:
                    away = ServiceUnavailable("The database is unavailable; try again shortly")
                    away.headers["retry-after"] = "2"
                    await _send_envelope(scope, send_with_headers, away)
        finally:
            _log_access(scope, state, response["status"], started)
            observe_request(scope, response["status"], started)


class BodyLimitMiddleware:
    """Refuses oversize bodies with 413 before or while they stream in, never after buffering them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._large_bodies = asyncio.Semaphore(_LARGE_BODIES_AT_ONCE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        attachments = bool(_ATTACHMENT_ROUTES.match(scope["path"]))
        limit = ATTACHMENT_BODY_LIMIT if attachments else DEFAULT_BODY_LIMIT
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_envelope(scope, send, _too_large(limit))
            return
        limited = _limited_receive(receive, limit)
        if not attachments or (declared is not None and declared <= DEFAULT_BODY_LIMIT):
            await self._limited(scope, limited, send, limit)
            return
        # Bodies that may reach 40 MiB are parsed a few at a time, bounding memory; a request that
        # cannot get its turn soon is asked to come back rather than left waiting.
        try:
            await asyncio.wait_for(self._large_bodies.acquire(), LARGE_BODY_WAIT_SECONDS)
        except TimeoutError:
            busy = ServiceUnavailable("Too many large uploads at once", headers={"retry-after": "5"})
            await _send_envelope(scope, send, busy)
            return
        try:
            if declared is None:
                # A body of unknown length (chunked) is read to its end into a temporary file before
                # the app sees it, so an oversize one is refused having held at most 1 MiB in memory,
                # not the up to 40 MiB the app would have gathered before the limit tripped.
                try:
                    limited = await _spooled(limited)
                except BodyTooLarge:
                    await _send_envelope(scope, send, _too_large(limit))
                    return
            await self._limited(scope, limited, send, limit)
        finally:
            self._large_bodies.release()

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Runs the app; an oversize body that the app did not answer itself is answered 413 here."""
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _send_envelope(scope, send, _too_large(limit))


class BodyTooLarge(StarletteHTTPException):
    """An HTTPException, so it passes FastAPI's body reader unchanged (other errors there become a
    400) and its handler answers payload_too_large."""


def _limited_receive(receive: Receive, limit: int) -> Receive:
    received = 0

    async def wrapped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(413, _too_large(limit).message)
        return message

    return wrapped


async def _spooled(receive: Receive) -> Receive:
    """Reads the whole body into a temporary file (in memory up to 1 MiB, on disk beyond; the writes
    go to the page cache, short enough to make in the event loop) and replays it from there."""
    spool = tempfile.SpooledTemporaryFile(max_size=DEFAULT_BODY_LIMIT)  # noqa: SIM115 - closed by replay
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: the app hears of it at once
                spool.close()
                return _replayed([message], receive)
            spool.write(message.get("body", b""))
            if not message.get("more_body", False):
                break
    except BaseException:
        spool.close()
        raise
    size = spool.tell()
    spool.seek(0)

    async def replay() -> Message:
        if spool.closed:
            return await receive()
        chunk = spool.read(DEFAULT_BODY_LIMIT)
        more = spool.tell() < size
        if not more:
            spool.close()
        return {"type": "http.request", "body": chunk, "more_body": more}

    return replay


def _replayed(messages: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit // MIB} MiB")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def _request_id(scope: Scope) -> str:
    offered = _header(scope, b"x-request-id")
    if offered and _SANE_REQUEST_ID.match(offered):
        return offered
    return f"req_{secrets.token_hex(12)}"


def _resolve_sandbox(scope: Scope) -> bool:
    """`/api/sandbox/...` and `x-api-sandbox: true` are one mode (contract §1): both land on /api/v2."""
    path: str = scope["path"]
    if path == SANDBOX_PREFIX or path.startswith(SANDBOX_PREFIX + "/"):
        scope["path"] = API_PREFIX + path[len(SANDBOX_PREFIX) :]
        scope["raw_path"] = scope["path"].encode()
        return True
    return (_header(scope, b"x-api-sandbox") or "").strip().lower() == "true"


EXPOSED_HEADERS = "x-request-id, location, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset"


def cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """What lets a browser of `origin` read the answer (set for candidate session routes only)."""
    return [
        (b"access-control-allow-origin", origin.encode()),
        (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
        (b"vary", b"Origin"),
    ]


def _extra_headers(state: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-request-id", state["request_id"].encode())]
    limit = state.get("rate_limit")
    if limit is not None:
        headers += [
            (b"ratelimit-limit", str(limit.limit).encode()),
            (b"ratelimit-remaining", str(limit.remaining).encode()),
            (b"ratelimit-reset", str(limit.reset_seconds).encode()),
        ]
    if state.get("deprecated_header"):
        headers.append((b"deprecation", b"true"))
    if state.get("cors_origin"):  # a session route, for an origin its region allows
        headers += cors_headers(state["cors_origin"])
    return headers


async def _send_envelope(scope: Scope, send: Send, error: ApiError) -> None:
    body = orjson.dumps(error_body(Request(scope), error))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    headers += [(name.encode(), value.encode()) for name, value in error.headers.items()]
    if isinstance(error, PayloadTooLarge):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log_access(scope: Scope, state: dict[str, Any], status: int, started: float) -> None:
    # Path only: query strings can hold e-mail addresses or keys, and bodies and headers are never logged.
    access_log.info(
        "request",
        extra={
            "request_id": state.get("request_id"),
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "region_id": state.get("region_id"),
        },
    )
