"""URL safety (contract §2.6): checked without ever connecting; names resolved by a fake resolver."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from onderwijsregio.outbound.urls import UrlNotAllowed, UrlPolicy, check_url

STRICT = UrlPolicy.from_setting(allow_http=False, allowlist="")
LOCAL_DEV = UrlPolicy.from_setting(allow_http=True, allowlist="127.0.0.1,localhost,10.9.0.0/16")


class FakeResolver:
    """A DNS stand-in: a fixed table, and a count of look-ups (no socket is ever opened)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        if host == "slow.example.org":
            await asyncio.sleep(5)
        if host not in self.table:
            raise OSError("name does not resolve")
        return self.table[host]


RESOLVER = FakeResolver(
    {
        "public.example.org": ["93.184.216.34"],
        "mixed.example.org": ["93.184.216.34", "10.0.0.5"],
        "internal.example.org": ["192.168.10.10"],
        "v6private.example.org": ["fd12:3456::1"],
        "mapped.example.org": ["::ffff:127.0.0.1"],
        "localhost": ["127.0.0.1"],
    }
)

FORBIDDEN = [
    "http://public.example.org/hook",  # http not allowed by this policy
    "ftp://public.example.org/hook",
    "https:///no-host",
    "/relative/hook",
    "https://user:pass@public.example.org/hook",
    "https://token@public.example.org/hook",
    "https://public.example.org:22/hook",
    "https://public.example.org:0/hook",
    "https://public.example.org:99999/hook",
    "https://mixed.example.org/hook",
    "https://internal.example.org/hook",
    "https://v6private.example.org/hook",
    "https://mapped.example.org/hook",
    "https://localhost/hook",
    "https://nowhere.example.org/hook",
    "https://slow.example.org/hook",
    "https://127.0.0.1/hook",
    "https://127.1.2.3/hook",
    "https://0.0.0.0/hook",
    "https://10.0.0.1/hook",
    "https://172.16.0.1/hook",
    "https://172.31.255.255/hook",
    "https://192.168.0.1/hook",
    "https://100.64.0.1/hook",
    "https://100.100.100.200/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://169.254.170.2/hook",
    "https://192.0.0.192/hook",
    "https://192.0.2.10/hook",
    "https://198.51.100.10/hook",
    "https://203.0.113.10/hook",
    "https://198.18.0.1/hook",
    "https://224.0.0.1/hook",
    "https://239.255.255.250/hook",
    "https://240.0.0.1/hook",
    "https://255.255.255.255/hook",
    "https://[::1]/hook",
    "https://[::]/hook",
    "https://[fe80::1]/hook",
    "https://[fc00::1]/hook",
    "https://[fd00:ec2::254]/hook",
    "https://[ff02::1]/hook",
    "https://[::ffff:10.0.0.1]/hook",
    "https://[::ffff:169.254.169.254]/hook",
    "https://[64:ff9b::a00:1]/hook",
    "https://[64:ff9b::7f00:1]/hook",
    "https://[64:ff9b:1::1]/hook",
    "https://[2002:7f00:1::]/hook",
    "https://[2002:c0a8:101::]/hook",
    "https://[2001:db8::1]/hook",
    "https://[2001::1]/hook",
    "https://[::127.0.0.1]/hook",
    "https://[fec0::1]/hook",
    "https://[3fff::1]/hook",
]


@pytest.mark.parametrize("url", FORBIDDEN)
async def test_forbidden_urls_are_refused(url: str) -> None:
    with pytest.raises(UrlNotAllowed) as refused:
        await check_url(url, STRICT, RESOLVER)
    assert refused.value.status_code == 422
    assert refused.value.code == "url_not_allowed"


def test_the_table_is_long_enough() -> None:
    assert len(FORBIDDEN) >= 40


@pytest.mark.parametrize(
    "url",
    [
        "https://public.example.org/hook?x=1",
        "https://public.example.org:8443/hook",
        "https://93.184.216.34/hook",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
        "https://public.example.org:443/",
    ],
)
async def test_public_urls_pass(url: str) -> None:
    checked = await check_url(url, STRICT, RESOLVER)
    assert checked.addresses
    assert all(
        address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946") for address in checked.addresses
    )


async def test_allowlist_matches_the_host_as_written_never_a_lookup() -> None:
    assert (await check_url("http://127.0.0.1:8080/hook", LOCAL_DEV, RESOLVER)).addresses == ("127.0.0.1",)
    assert (await check_url("http://localhost:8080/hook", LOCAL_DEV, RESOLVER)).addresses == ("127.0.0.1",)
    assert (await check_url("http://10.9.3.4:8080/hook", LOCAL_DEV, RESOLVER)).addresses == ("10.9.3.4",)
    # a name that resolves to an allowlisted address is not itself allowlisted
    with pytest.raises(UrlNotAllowed):
        await check_url("http://mapped.example.org:8080/hook", LOCAL_DEV, RESOLVER)
    with pytest.raises(UrlNotAllowed):
        await check_url("http://10.10.0.1:8080/hook", LOCAL_DEV, RESOLVER)


async def test_allowlisted_hosts_keep_the_port_and_credential_rules() -> None:
    for url in ("http://127.0.0.1:22/hook", "http://user:secret@127.0.0.1:8080/hook"):
        with pytest.raises(UrlNotAllowed):
            await check_url(url, LOCAL_DEV, RESOLVER)


async def test_literals_are_never_looked_up() -> None:
    resolver = FakeResolver({})
    with pytest.raises(UrlNotAllowed):
        await check_url("https://10.0.0.1/hook", STRICT, resolver)
    await check_url("https://93.184.216.34/hook", STRICT, resolver)
    assert resolver.lookups == []


class CountingResolver(FakeResolver):
    """Answers differently on each look-up, like a rebinding attacker's DNS."""

    def __init__(self, answers: list[list[str]]) -> None:
        super().__init__({})
        self.answers = answers

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


async def test_connections_go_only_to_the_address_that_was_checked() -> None:
    """A name allowed as written is reached at the address its check resolved, Host and all."""
    from onderwijsregio.outbound import client
    from tests.receiver import Receiver

    receiver = Receiver()
    try:
        policy = UrlPolicy.from_setting(allow_http=True, allowlist="pinned.test")
        resolver = FakeResolver({"pinned.test": ["127.0.0.1"]})
        answer = await client.post(
            f"http://pinned.test:{receiver.port}/hook?x=1", b"{}", {}, policy=policy, resolver=resolver
        )
        assert answer.status_code == 200
        [request] = receiver.requests
        assert request.path == "/hook?x=1"
        assert request.headers["host"] == f"pinned.test:{receiver.port}"
    finally:
        receiver.close()


async def test_rebinding_to_a_private_address_never_connects() -> None:
    """Public at submission, private when connecting: refused, and no connection is made."""
    from onderwijsregio.outbound import client
    from tests.receiver import Receiver

    receiver = Receiver()
    try:
        resolver = CountingResolver([["93.184.216.34"], ["127.0.0.1"]])
        policy = UrlPolicy.from_setting(allow_http=True, allowlist="")
        url = f"http://rebind.example.org:{receiver.port}/hook"
        await check_url(url, policy, resolver)  # the submission check passes
        with pytest.raises(UrlNotAllowed):
            await client.post(url, b"{}", {}, policy=policy, resolver=resolver)
        assert resolver.lookups == ["rebind.example.org", "rebind.example.org"]
        assert receiver.requests == []
    finally:
        receiver.close()
