"""Body limits (contract §1.4) of the middleware, in front of an app that reads and counts the body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
from starlette.types import Receive, Scope, Send

from onderwijsregio.middleware import MIB, BodyLimitMiddleware, RequestContextMiddleware


async def counting_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body and answers with its size."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = orjson.dumps({"size": size})
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


APP = RequestContextMiddleware(BodyLimitMiddleware(counting_app))


async def post(path: str, size: int, *, chunked: bool = False) -> httpx.Response:
    async def stream() -> AsyncIterator[bytes]:
        remaining = size
        while remaining:
            piece = min(remaining, 256 * 1024)
            remaining -= piece
            yield b"x" * piece

    content: bytes | AsyncIterator[bytes] = stream() if chunked else b"x" * size
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://t") as http:
        return await http.post(path, content=content, headers={"content-type": "application/json"})


async def test_ordinary_routes_take_one_mebibyte() -> None:
    assert (await post("/api/v2/regions", MIB)).json() == {"size": MIB}
    for chunked in (False, True):
        refused = await post("/api/v2/regions", MIB + 1, chunked=chunked)
        assert refused.status_code == 413
        assert refused.json()["error"]["code"] == "payload_too_large"


async def test_routes_with_attachments_take_forty_mebibytes() -> None:
    for path in ("/api/v2/candidates", "/api/v2/candidates/upsert", "/api/v2/candidates/cand_X/attachments"):
        assert (await post(path, 2 * MIB)).json() == {"size": 2 * MIB}
        assert (await post(path, 2 * MIB, chunked=True)).json() == {"size": 2 * MIB}
        assert (await post(path, 40 * MIB + 1)).status_code == 413
    assert (await post("/api/sandbox/candidates", 41 * MIB, chunked=True)).status_code == 413
    # other candidate routes keep the ordinary limit
    assert (await post("/api/v2/candidates/cand_X/interactions", 2 * MIB)).status_code == 413
