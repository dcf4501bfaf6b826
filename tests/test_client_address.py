"""FORWARDED_ALLOW_IPS, IPv6 clients by /64, and the per-account delay across addresses."""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Callable
from typing import Any

import pytest

from service.app import create_app
from service.client_address import decide
from service.db import Database
from service.settings import Settings
from tests.conftest import log_lines
from tests.helpers import problem
from tests.helpers_auth import BAD_LOGIN, PASSWORD, Client, make_user
from tests.log_hygiene import remember

ClientFactory = Callable[..., Any]
LIMIT = 3
PROXY = [ipaddress.ip_network("127.0.0.1/32")]  # the test client's peer
WRONG = remember("not alice's password", "a wrong password")


@pytest.mark.parametrize(
    ("peer", "hops", "trusted", "client"),
    [
        ("203.0.113.9", ["6.6.6.6"], [], "203.0.113.9"),  # no proxy trusted: the peer
        ("203.0.113.9", ["6.6.6.6"], ["10.0.0.0/8"], "203.0.113.9"),  # an untrusted peer
        ("10.0.0.1", ["6.6.6.6", "198.51.100.7"], ["10.0.0.0/8"], "198.51.100.7"),
        ("10.0.0.1", ["6.6.6.6", "198.51.100.7", "10.0.0.2"], ["10.0.0.0/8"], "198.51.100.7"),
        ("10.0.0.1", ["10.0.0.3", "10.0.0.2"], ["10.0.0.0/8"], "10.0.0.3"),  # all trusted
        ("10.0.0.1", [], ["10.0.0.0/8"], "10.0.0.1"),  # no header
        ("10.0.0.1", ["6.6.6.6", "garbage"], ["10.0.0.0/8"], "10.0.0.1"),  # stop at the proxy
        ("10.0.0.1", ["198.51.100.7:4711"], ["10.0.0.0/8"], "198.51.100.7"),
        ("10.0.0.1", ["[2001:db8::7]:4711"], ["10.0.0.0/8"], "2001:db8::7"),
        ("::ffff:10.0.0.1", ["2001:db8::7"], ["10.0.0.0/8"], "2001:db8::7"),  # mapped IPv4
        ("fd00::1", ['"[2001:db8::8]"'], ["fd00::/8"], "2001:db8::8"),
        (None, ["6.6.6.6"], ["10.0.0.0/8"], None),  # a Unix socket
    ],
)
def test_the_client_is_the_rightmost_untrusted_hop(
    peer: str | None, hops: list[str], trusted: list[str], client: str | None
) -> None:
    networks = [ipaddress.ip_network(network) for network in trusted]
    assert decide(peer, hops, networks) == client


@pytest.fixture
async def behind_proxy(aiohttp_client: ClientFactory, migrated: Settings) -> Client:
    """The app behind a trusted proxy (the test client), with LOGIN_MAX_FAILURES=3."""
    settings = dataclasses.replace(
        migrated,
        forwarded_allow_ips=tuple(PROXY),
        login_max_failures=LIMIT,
        login_account_max_delay_seconds=0,  # the pair lockout alone
    )
    return await aiohttp_client(create_app(settings))  # type: ignore[no-any-return]


async def attempt(client: Client, address: str, password: str, **headers: str) -> Any:
    return await client.post(
        "/login/access-token",
        data={"username": "alice", "password": password},
        headers={"X-Forwarded-For": address, **headers},
    )


async def test_behind_a_trusted_proxy_one_client_cannot_lock_out_another(
    behind_proxy: Client, database: Database, migrated: Settings
) -> None:
    """All clients share the proxy's address: throttling goes by the forwarded one, the
    session row and the log line name it too."""
    await make_user(database, "alice")
    for _ in range(LIMIT):
        await problem(await attempt(behind_proxy, "203.0.113.66", WRONG), 401, BAD_LOGIN)
    await problem(await attempt(behind_proxy, "203.0.113.66", PASSWORD), 429)
    owner = await attempt(behind_proxy, "6.6.6.6, 198.51.100.7", PASSWORD)  # spoof ignored
    assert owner.status == 200, await owner.text()
    async with database.read() as conn:
        clients = {row[0] for row in await conn.fetch_all("SELECT client FROM sessions")}
    assert "198.51.100.7" in clients
    lines = log_lines(migrated)
    assert any(
        "POST /login/access-token" in line and "client=203.0.113.66" in line for line in lines
    )
    assert any("status=200" in line and line.endswith("client=198.51.100.7") for line in lines)


async def test_without_trusted_proxies_the_forwarded_header_is_ignored(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    """By default a client cannot pick its address: each guess counts against the peer."""
    settings = dataclasses.replace(migrated, login_max_failures=LIMIT)
    client: Client = await aiohttp_client(create_app(settings))
    await make_user(database, "alice")
    for n in range(LIMIT):
        await problem(await attempt(client, f"203.0.113.{n}", WRONG), 401)
    await problem(await attempt(client, "203.0.113.200", PASSWORD), 429)
    async with database.read() as conn:
        rows = await conn.fetch_all("SELECT client FROM login_failures")
    assert {row[0] for row in rows} == {"127.0.0.1"}


async def test_ipv6_clients_are_counted_by_their_64(
    behind_proxy: Client, database: Database
) -> None:
    """A host gets a whole /64: changing the low 64 bits is the same client."""
    await make_user(database, "alice")
    for n in range(LIMIT):
        await problem(await attempt(behind_proxy, f"2001:db8:1:2::{n + 1}", WRONG), 401)
    await problem(await attempt(behind_proxy, "2001:db8:1:2:ffff::9", PASSWORD), 429)
    other = await attempt(behind_proxy, "2001:db8:1:3::1", PASSWORD)
    assert other.status == 200, await other.text()


async def test_the_forwarded_header_when_the_proxy_writes_that_one(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    settings = Settings.from_env(
        {"FORWARDED_ALLOW_IPS": "127.0.0.1", "FORWARDED_HEADER": "forwarded"}
    )
    settings = dataclasses.replace(
        migrated,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        forwarded_header=settings.forwarded_header,
    )
    client: Client = await aiohttp_client(create_app(settings))
    await make_user(database, "alice")
    response = await client.post(
        "/login/access-token",
        data={"username": "alice", "password": PASSWORD},
        headers={
            "Forwarded": 'for=6.6.6.6, for="[2001:db8::5]:4711"',
            "X-Forwarded-For": "7.7.7.7",
        },
    )
    assert response.status == 200, await response.text()
    async with database.read() as conn:
        clients = {row[0] for row in await conn.fetch_all("SELECT client FROM sessions")}
    assert "2001:db8::5" in clients and "7.7.7.7" not in clients


# --- the per-account delay -------------------------------------------------------------


@pytest.fixture
async def slowed(aiohttp_client: ClientFactory, migrated: Settings) -> Client:
    settings = dataclasses.replace(
        migrated,
        forwarded_allow_ips=tuple(PROXY),
        login_max_failures=LIMIT,
        login_account_max_delay_seconds=60,
    )
    return await aiohttp_client(create_app(settings))  # type: ignore[no-any-return]


WINDOW, CAP = 300, 60  # LOGIN_FAILURE_WINDOW_SECONDS, LOGIN_ACCOUNT_MAX_DELAY_SECONDS


@pytest.fixture
async def clocked(aiohttp_client: ClientFactory, migrated: Settings) -> tuple[Client, list[float]]:
    """An app with the per-account delay on, and its clock: moved by hand, never slept."""
    now = [time.time()]
    settings = dataclasses.replace(
        migrated,
        forwarded_allow_ips=tuple(PROXY),
        login_max_failures=LIMIT,
        login_failure_window_seconds=WINDOW,
        login_account_max_delay_seconds=CAP,
    )
    return await aiohttp_client(create_app(settings, clock=lambda: now[0])), now


async def set_account_row(database: Database, **columns: float) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    async with database.transaction() as conn:
        await conn.execute(f"UPDATE login_account_failures SET {assignments}", columns)


async def test_guesses_from_many_addresses_are_slowed_by_a_growing_capped_delay(
    slowed: Client, database: Database
) -> None:
    """Past twice LOGIN_MAX_FAILURES failures of one account from any addresses, each
    failure makes the account wait 1, 2, 4, ... s (even the right password: 429), at most
    LOGIN_ACCOUNT_MAX_DELAY_SECONDS; once that passes, the owner logs in."""
    await make_user(database, "alice")
    for _ in range(LIMIT):  # one address, up to its own lockout: no delay for the account
        await problem(await attempt(slowed, "192.0.2.1", WRONG), 401)
    owner = await attempt(slowed, "192.0.2.200", PASSWORD)
    assert owner.status == 200, await owner.text()
    for n in range(2 * LIMIT):
        await problem(await attempt(slowed, f"203.0.113.{n}", WRONG), 401)
    first = await attempt(slowed, "198.51.100.1", PASSWORD)
    await problem(first, 429)
    assert first.headers["Retry-After"] == "1"
    await set_account_row(database, last_failure_at=time.time() - 10)
    await problem(await attempt(slowed, "198.51.100.2", WRONG), 401)
    second = await attempt(slowed, "198.51.100.3", PASSWORD)
    await problem(second, 429)
    assert second.headers["Retry-After"] == "2"
    await set_account_row(database, failures=40, last_failure_at=time.time() - 120)
    await problem(await attempt(slowed, "198.51.100.4", WRONG), 401)
    capped = await attempt(slowed, "198.51.100.5", PASSWORD)
    await problem(capped, 429)
    assert 58 <= int(capped.headers["Retry-After"]) <= 60
    await set_account_row(database, last_failure_at=time.time() - 61)
    owner = await attempt(slowed, "198.51.100.6", PASSWORD)
    assert owner.status == 200, await owner.text()
    async with database.read() as conn:
        assert list(await conn.fetch_all("SELECT * FROM login_account_failures")) == []


async def test_a_guesser_who_keeps_to_the_delay_never_gets_free_guesses_back(
    clocked: tuple[Client, list[float]], database: Database
) -> None:
    """The account's count outlives LOGIN_FAILURE_WINDOW_SECONDS while guesses keep coming:
    waiting out each Retry-After from ever new addresses gives one guess per
    LOGIN_ACCOUNT_MAX_DELAY_SECONDS, not twice LOGIN_MAX_FAILURES more every window."""
    client, now = clocked  # 20 minutes of the app's clock pass in no time
    await make_user(database, "alice")
    began, guesses, refused = now[0], 0, 0
    while now[0] < began + 4 * WINDOW:
        response = await attempt(client, f"10.0.{guesses // 250}.{guesses % 250}", WRONG)
        if response.status == 429:
            refused += 1
            now[0] += int(response.headers["Retry-After"])
            continue
        await problem(response, 401)
        guesses += 1
    # 2 x LIMIT free, then 1, 2, 4, 8, 16, 32 s, then one a minute for the rest: ~28. A
    # window that restarted every 300 s gave the 6 free ones and the short delays back.
    free, ramp = 2 * LIMIT, 6
    assert guesses <= free + ramp + (4 * WINDOW) // CAP + 1, guesses
    assert refused > 0
    # A whole window without a failure forgets the account's count: the owner walks in.
    now[0] += WINDOW
    owner = await attempt(client, "198.51.100.7", PASSWORD)
    assert owner.status == 200, await owner.text()


async def test_one_address_guessing_window_after_window_never_slows_the_owner(
    clocked: tuple[Client, list[float]], database: Database
) -> None:
    client, now = clocked
    await make_user(database, "alice")
    for _ in range(4):  # 4 x LIMIT failures: twice the account's free ones, never in one window
        for _ in range(LIMIT):
            await problem(await attempt(client, "192.0.2.1", WRONG), 401)
        await problem(await attempt(client, "192.0.2.1", WRONG), 429)  # that pair is locked
        now[0] += WINDOW
    owner = await attempt(client, "198.51.100.8", PASSWORD)
    assert owner.status == 200, await owner.text()
