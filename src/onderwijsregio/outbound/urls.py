"""URL safety for everything we connect to on a client's word (contract §2.6).

Callbacks, webhooks and attachment URLs are checked when they are submitted and again when we
connect, and we connect only to an address that passed the check (no DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from onderwijsregio.errors import ApiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

RESOLVE_TIMEOUT_SECONDS = 2.0
MAX_URL_LENGTH = 2000
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
_IPV6_DOCUMENTATION = ipaddress.ip_network("3fff::/20")  # RFC 9637, newer than Python's tables
_METADATA = {
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "192.0.0.192")
}


class UrlNotAllowed(ApiError):
    status_code, code, message = 422, "url_not_allowed", "This URL may not be used"


@dataclass(frozen=True)
class UrlPolicy:
    allow_http: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_setting(cls, allow_http: bool, allowlist: str) -> UrlPolicy:
        hosts, networks = set(), []
        for entry in (part.strip() for part in allowlist.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(allow_http, frozenset(hosts), tuple(networks))

    def allowlisted(self, host: str) -> bool:
        """The host as written in the URL, never what it resolves to."""
        if host.lower().rstrip(".") in self.allowed_hosts:
            return True
        literal = _literal(host)
        return literal is not None and any(literal in network for network in self.allowed_networks)


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    parts: SplitResult
    host: str
    port: int
    addresses: tuple[str, ...]  # every one of them passed the check


def check_form(url: str, policy: UrlPolicy) -> SplitResult:
    """Everything that can be checked without DNS: length, scheme, credentials, port, host."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlNotAllowed("The URL is too long")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlNotAllowed("The URL is malformed") from None
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise UrlNotAllowed(f"Only absolute {' or '.join(schemes)} URLs are allowed")
    if not parts.hostname:
        raise UrlNotAllowed("The URL has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UrlNotAllowed("Credentials in a URL are not allowed")
    if port is not None and port not in (80, 443) and not 1024 <= port <= 65535:
        raise UrlNotAllowed("Only the default ports or ports 1024-65535 are allowed")
    return parts


async def check_url(url: str, policy: UrlPolicy, resolver: Resolver | None = None) -> CheckedUrl:
    """The whole check of §2.6; raises UrlNotAllowed. Used at submission and again before connecting."""
    parts = check_form(url, policy)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = _literal(host)
    if literal is not None:
        addresses: Sequence[str] = [str(literal)]
    else:
        addresses = await _resolve(host, port, resolver or system_resolver)
    if not policy.allowlisted(host):
        for address in addresses:
            if not is_public_address(ipaddress.ip_address(address)):
                raise UrlNotAllowed("The URL points at an address that is not publicly routable")
    return CheckedUrl(url, parts, host, port, tuple(addresses))


async def _resolve(host: str, port: int, resolver: Resolver) -> Sequence[str]:
    try:
        addresses = await asyncio.wait_for(resolver(host, port), RESOLVE_TIMEOUT_SECONDS)
    except (TimeoutError, OSError, UnicodeError):
        raise UrlNotAllowed("The URL's host does not resolve") from None
    if not addresses:
        raise UrlNotAllowed("The URL's host does not resolve")
    return addresses


async def system_resolver(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_public_address(address: IPAddress) -> bool:
    """Globally routable, and not hiding a private IPv4 address inside an IPv6 form."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
        if address in _LOCAL_NAT64 or address in _IPV6_DOCUMENTATION or address.teredo is not None:
            return False
        if address.is_site_local:
            return False
    if address in _METADATA:
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_private
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    # IPv4-compatible (deprecated) ::a.b.c.d
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None
