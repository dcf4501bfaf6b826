"""GET /metrics in one process: what is counted, who may read it, and the settings.

The output is read with prometheus-client's own parser, as a scraper would read it.
`tests/test_metrics_process.py` covers several workers and a real Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service import keys
from service.app import create_app
from service.db import Database, DatabaseUnavailable
from service.settings import Settings, SettingsError
from tests import engines
from tests.helpers import problem
from tests.helpers_auth import (
    BAD_LOGIN,
    PASSWORD,
    Client,
    auth,
    login,
    make_user,
)
from tests.log_hygiene import remember
from tests.test_totp import STEP, Clock, client_with, code, enable, mfa_token, second_step

ClientFactory = Callable[..., Any]
WRONG = remember("not the metrics user's password", "a wrong password")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: Client, **headers: str) -> Samples:
    """GET /metrics (must succeed), parsed: {(sample name, labels): value}."""
    response = await client.get("/metrics", headers=headers)
    text = await response.text()
    assert response.status == 200, text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a series not (yet) exported."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for sample, labels in samples if sample == name}


async def test_requests_are_counted_by_method_route_template_and_status(client: Client) -> None:
    for product_id in (1, 22, 333):  # three paths, one template
        await problem(await client.get(f"/products/{product_id}"), 404)
    await problem(await client.get("/no/such/route/4711"), 404)
    await problem(await client.request("PROPFIND", "/products/"), 405)
    assert (await client.get("/health")).status == 200
    for path in ("/products/", "/products"):  # a collection and its alias: one template
        assert (await client.get(path)).status == 200
    samples = await scrape(client)

    route = "/products/{product_id}"
    assert value(samples, "http_requests_total", method="GET", route=route, status="404") == 3
    assert value(samples, "http_requests_total", method="GET", route="/health", status="200") == 1
    assert value(samples, "http_requests_total", method="GET", route="/products", status="200") == 2
    # Neither a path no route matched nor a made-up method becomes a label value.
    unmatched = {"route": "unmatched"}
    assert value(samples, "http_requests_total", method="GET", status="404", **unmatched) == 1
    assert value(samples, "http_requests_total", method="other", status="405", **unmatched) == 1
    routes = label_values(samples, "http_requests_total", "route")
    assert not any("4711" in each or "333" in each for each in routes), routes
    assert "PROPFIND" not in label_values(samples, "http_requests_total", "method")
    # The latency histogram, by route template: every request is in the +Inf bucket.
    duration = "http_request_duration_seconds"
    assert value(samples, f"{duration}_count", method="GET", route=route) == 3
    assert value(samples, f"{duration}_bucket", method="GET", route=route, le="+Inf") == 3
    assert value(samples, f"{duration}_sum", method="GET", route=route) > 0
    # The scrape itself is the one request in flight while the metrics are written.
    assert value(samples, "http_requests_in_flight") == 1
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0


async def test_a_request_the_client_abandons_is_counted_as_499(
    aiohttp_client: ClientFactory, migrated: Settings
) -> None:
    app = create_app(migrated)
    entered = asyncio.Event()

    async def slow(_: Any) -> Any:
        entered.set()
        await asyncio.sleep(60)

    app.router.add_get("/slow", slow)
    client: Client = await aiohttp_client(app)
    pending = asyncio.ensure_future(client.get("/slow"))
    await entered.wait()
    assert value(await scrape(client), "http_requests_in_flight") == 2  # /slow and the scrape
    pending.cancel()
    for _ in range(200):  # the server notices the closed connection soon after
        samples = await scrape(client)
        if value(samples, "http_requests_total", method="GET", route="/slow", status="499"):
            break
        await asyncio.sleep(0.01)
    assert value(samples, "http_requests_total", method="GET", route="/slow", status="499") == 1
    assert value(samples, "http_requests_in_flight") == 1


async def test_login_outcomes_and_the_password_hash_queue(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    client: Client = await aiohttp_client(
        create_app(dataclasses.replace(migrated, login_max_failures=2))
    )
    await make_user(database, "alice")
    await make_user(database, "idle", is_active=False)
    assert (await login(client, "alice")).status == 200
    await problem(await login(client, "alice", WRONG), 401, BAD_LOGIN)
    await problem(await login(client, "nobody", WRONG), 401, BAD_LOGIN)
    await problem(await login(client, "idle"), 400)
    await problem(await login(client, "nobody", WRONG), 401)  # the pair's second: now locked
    samples = await scrape(client)

    outcomes = {
        outcome: value(samples, "login_attempts_total", outcome=outcome)
        for outcome in label_values(samples, "login_attempts_total", "outcome")
    }
    assert outcomes == {
        "success": 1,
        "failure": 3,  # unknown user and wrong password alike
        "throttled": 0,
        "inactive": 1,
        "unverified": 0,
        "second_factor": 0,
    }
    await problem(await login(client, "nobody", PASSWORD), 429)
    samples = await scrape(client)
    assert value(samples, "login_attempts_total", outcome="throttled") == 1
    # The help text names both steps of a login: /login/mfa's codes are counted too.
    text = await (await client.get("/metrics")).text()
    assert (
        "# HELP login_attempts_total Login attempts "
        "(POST /login/access-token and POST /login/mfa) by outcome"
    ) in text
    # Every verification went through the hash pool (the throttled ones spare the hash).
    assert value(samples, "password_hash_queue_wait_seconds_count") == 5
    assert value(samples, "password_hashes_in_flight") == 0


async def test_units_of_work_by_outcome_and_the_connection_waits(
    aiohttp_client: ClientFactory, migrated: Settings
) -> None:
    app = create_app(migrated)
    client: Client = await aiohttp_client(app)
    before = await scrape(client)
    created = await client.post("/products/", json={"name": "tea", "price": 3})
    assert created.status == 201, await created.text()
    assert (await client.get("/products/")).status == 200

    async with app[keys.DATABASE].transaction() as conn:  # as a route's unit of work would
        await conn.fetch_one("SELECT 1")
    with pytest.raises(RuntimeError):
        async with app[keys.DATABASE].transaction() as conn:
            await conn.fetch_one("SELECT 1")
            raise RuntimeError("the block failed")
    with pytest.raises(DatabaseUnavailable):
        async with app[keys.DATABASE].transaction():
            raise DatabaseUnavailable("the server went away")
    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    units = "database_units_of_work_total"
    assert grew(units, outcome="committed") == 2
    assert grew(units, outcome="rolled_back") == 1
    assert grew(units, outcome="unavailable") == 1
    assert grew("database_connection_wait_seconds_count", kind="write") == 4
    assert grew("database_connection_wait_seconds_count", kind="read") >= 1


@pytest.mark.needs_postgresql
async def test_a_unit_of_work_the_database_cannot_serve_is_counted_unavailable(
    aiohttp_client: ClientFactory, migrated: Settings
) -> None:
    """Only PostgreSQL can be out of reach: its pool is closed under the app (a 503)."""
    with contextlib.ExitStack() as stack:
        url = migrated.postgres_url or stack.enter_context(engines.own_database(migrated=True))
        app = create_app(dataclasses.replace(migrated, postgres_url=url))
        client: Client = await aiohttp_client(app)
        await app[keys.DATABASE].close()
        await problem(await client.post("/products/", json={"name": "tea", "price": 3}), 503)
        samples = await scrape(client)
    units = "database_units_of_work_total"
    assert value(samples, units, outcome="unavailable") == 1
    assert value(samples, units, outcome="committed") == 0
    assert value(samples, units, outcome="rolled_back") == 0


async def test_only_allowed_addresses_see_the_metrics_others_get_an_unknown_routes_404(
    aiohttp_client: ClientFactory, migrated: Settings
) -> None:
    elsewhere = (ipaddress.ip_network("10.0.0.0/8"),)
    client: Client = await aiohttp_client(
        create_app(dataclasses.replace(migrated, metrics_allow_ips=elsewhere))
    )
    refused = await problem(await client.get("/metrics"), 404)
    unknown = await problem(await client.get("/metricz"), 404)
    assert refused["detail"] == unknown["detail"].replace("/metricz", "/metrics")
    assert "http_requests" not in refused["detail"]
    for method in ("POST", "DELETE"):  # no 405 to say that the route exists
        await problem(await client.request(method, "/metrics"), 404)


async def test_metrics_answers_get_and_head_only(client: Client) -> None:
    refused = await client.post("/metrics")
    await problem(refused, 405)
    assert refused.headers["Allow"] == "GET,HEAD"
    head = await client.head("/metrics")
    assert head.status == 200
    assert head.headers["Content-Type"].startswith("text/plain; version=0.0.4")


async def test_behind_a_trusted_proxy_the_forwarded_client_is_checked_not_the_proxy(
    aiohttp_client: ClientFactory, migrated: Settings
) -> None:
    """A proxy on the same host makes every peer loopback: the forwarded client decides."""
    proxy = (ipaddress.ip_network("127.0.0.1/32"),)
    client: Client = await aiohttp_client(
        create_app(dataclasses.replace(migrated, forwarded_allow_ips=proxy))
    )
    await problem(await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"}), 404)
    await scrape(client, **{"X-Forwarded-For": "127.0.0.1"})  # the proxy host's own scraper
    await scrape(client)  # a scraper that does not go through the proxy


async def test_without_trusted_proxies_a_forwarded_header_changes_nothing(client: Client) -> None:
    await scrape(client, **{"X-Forwarded-For": "203.0.113.7"})


async def test_metrics_disabled_means_no_route_and_nothing_recorded(
    aiohttp_client: ClientFactory, migrated: Settings
) -> None:
    app = create_app(dataclasses.replace(migrated, metrics_enabled=False))
    client: Client = await aiohttp_client(app)
    await problem(await client.get("/metrics"), 404)
    assert keys.METRICS not in app
    assert "/metrics" not in {
        route.resource.canonical for route in app.router.routes() if route.resource
    }


def test_metrics_is_not_in_the_api_document(migrated: Settings) -> None:
    from service.openapi.document import build_document

    app = create_app(migrated)
    assert "/metrics" not in build_document(app, migrated)["paths"]


def test_the_settings_are_read_and_validated(tmp_path: Path) -> None:
    defaults = Settings.from_env({})
    assert defaults.metrics_enabled is True
    assert defaults.metrics_allow_ips == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1"),
    )
    assert defaults.metrics_multiprocess_dir is None
    read = Settings.from_env(
        {
            "METRICS_ENABLED": "false",
            "METRICS_ALLOW_IPS": "10.1.2.3, 192.168.0.0/16",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        }
    )
    assert read.metrics_enabled is False
    assert read.metrics_allow_ips == (
        ipaddress.ip_network("10.1.2.3"),
        ipaddress.ip_network("192.168.0.0/16"),
    )
    assert read.metrics_multiprocess_dir == tmp_path
    for name, raw in (
        ("METRICS_ENABLED", "maybe"),
        ("METRICS_ALLOW_IPS", "10.0.0.0/8,localhost"),
        ("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing")),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: raw})


async def test_a_login_with_totp_counts_its_password_step_then_its_code(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    clock = Clock()
    client = await client_with(aiohttp_client, migrated, clock)
    alice = await make_user(database, "alice")
    secret, _ = await enable(client, await auth(database, alice.id), clock)
    before = await scrape(client)
    token = await mfa_token(client, "alice")  # the right password: a code is asked next
    clock.advance(STEP)  # the step whose code the confirmation spent is over
    right = code(secret, clock)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    await problem(await second_step(client, token, wrong), 401)
    assert (await second_step(client, token, right)).status == 200
    after = await scrape(client)

    def grew(outcome: str) -> float:
        name = "login_attempts_total"
        return value(after, name, outcome=outcome) - value(before, name, outcome=outcome)

    assert [grew(each) for each in ("second_factor", "failure", "success")] == [1, 1, 1]
