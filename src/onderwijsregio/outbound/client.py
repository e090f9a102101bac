"""Outbound HTTP that connects only to the address it checked (contract §2.6, no DNS rebinding).

Every request re-checks its URL, then connects to the checked IP address itself, sending the
original host in `Host` and as the TLS server name, so certificates are still verified for it.
Redirects are never followed here; the caller decides (callbacks never follow them).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

import httpx

from onderwijsregio.outbound.urls import CheckedUrl, Resolver, UrlPolicy, check_url

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
