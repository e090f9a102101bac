"""Outbound HTTP that connects only to the address it checked (contract §2.6, no DNS rebinding).

Every request re-checks its URL, then connects to the checked IP address itself, sending the
original host in `Host` and as the TLS server name, so certificates are still verified for it.
Redirects are never followed by httpx: callbacks never follow them, and a fetch follows a few
itself, checking each new URL like the first.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import IO

import httpx

from onderwijsregio.outbound.urls import CheckedUrl, Resolver, UrlNotAllowed, UrlPolicy, check_url

EXCERPT_BYTES = 1024


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: httpx.Headers
    excerpt: bytes  # at most 1 KiB of the body


def pinned_url(checked: CheckedUrl) -> str:
    address = ipaddress.ip_address(checked.addresses[0])
    host = f"[{address}]" if address.version == 6 else str(address)
    path = checked.parts.path or "/"
    query = f"?{checked.parts.query}" if checked.parts.query else ""
    return f"{checked.parts.scheme}://{host}:{checked.port}{path}{query}"


async def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    policy: UrlPolicy,
    resolver: Resolver | None = None,
    time_limit: float = 15.0,
) -> Answer:
    """POSTs within `time_limit` seconds in all (look-up, connection, sending, the answer's head)."""
    async with asyncio.timeout(time_limit):
        return await _post(url, body, headers, policy, resolver, time_limit)


async def _post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    policy: UrlPolicy,
    resolver: Resolver | None,
    time_limit: float,
) -> Answer:
    checked = await check_url(url, policy, resolver)
    host_header = checked.parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": checked.host} if checked.parts.scheme == "https" else {}
    async with httpx.AsyncClient(timeout=time_limit, follow_redirects=False, trust_env=False) as client:
        request = client.build_request(
            "POST",
            pinned_url(checked),
            content=body,
            headers={**headers, "host": host_header},
            extensions=extensions,
        )
        response = await client.send(request, stream=True)
        try:
            excerpt = b""
            async for chunk in response.aiter_bytes():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES:
                    break
        finally:
            await response.aclose()
    return Answer(response.status_code, response.headers, excerpt[:EXCERPT_BYTES])


class FetchFailed(Exception):
    """A file could not be fetched: `code` is the item's error code (§3.4)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def fetch(
    url: str,
    sink: IO[bytes],
    *,
    policy: UrlPolicy,
    max_bytes: int,
    max_redirects: int = 3,
    time_limit: float = 30.0,
    resolver: Resolver | None = None,
) -> None:
    """GETs `url` into `sink` within `time_limit` seconds in all, following at most `max_redirects`
    redirects (each checked like the first URL), and stops reading past `max_bytes` whatever the
    server declared."""
    try:
        async with asyncio.timeout(time_limit):
            for _ in range(max_redirects + 1):
                location = await _get(url, sink, policy, resolver, max_bytes, time_limit)
                if location is None:
                    return
                url = location
    except TimeoutError:
        raise FetchFailed("attachment_fetch_failed", f"Fetching took longer than {time_limit:g} s") from None
    except UrlNotAllowed as refused:
        raise FetchFailed("attachment_fetch_failed", f"Not fetched: {refused.message}") from None
    except httpx.HTTPError as error:
        raise FetchFailed("attachment_fetch_failed", f"Fetching failed ({type(error).__name__})") from None
    raise FetchFailed("attachment_fetch_failed", f"More than {max_redirects} redirects")


async def _get(
    url: str,
    sink: IO[bytes],
    policy: UrlPolicy,
    resolver: Resolver | None,
    max_bytes: int,
    time_limit: float,
) -> str | None:
    """One request: the next URL when redirected, else None with the body in `sink`."""
    checked = await check_url(url, policy, resolver)
    host_header = checked.parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": checked.host} if checked.parts.scheme == "https" else {}
    async with httpx.AsyncClient(timeout=time_limit, follow_redirects=False, trust_env=False) as client:
        request = client.build_request(
            "GET",
            pinned_url(checked),
            headers={"host": host_header, "accept-encoding": "identity"},
            extensions=extensions,
        )
        response = await client.send(request, stream=True)
        try:
            if response.status_code in REDIRECTS and "location" in response.headers:
                return str(httpx.URL(url).join(response.headers["location"]))
            if response.status_code != 200:
                raise FetchFailed("attachment_fetch_failed", f"The server answered {response.status_code}")
            sink.seek(0)
            sink.truncate()
            received = 0
            async for chunk in response.aiter_bytes():  # decoded, and counted as such
                received += len(chunk)
                if received > max_bytes:
                    raise FetchFailed("attachment_too_large", f"The file is larger than {max_bytes} bytes")
                sink.write(chunk)
            return None
        finally:
            await response.aclose()
