"""Log hygiene: the end-of-session secret scan works, client text cannot forge a log line,
and refused logins and 403s are logged without their secrets."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from service.app import create_app
from service.db import Database
from service.settings import Settings
from tests import log_hygiene
from tests.conftest import ClientFactory, log_lines
from tests.helpers_auth import PASSWORD, auth, craft_token, make_user
from tests.log_hygiene import PATTERNS, find_leaks

Client = TestClient[web.Request, web.Application]
REPO_ROOT = Path(__file__).resolve().parent.parent


# The scan itself: it must find what it is there to find.


def test_the_scan_finds_a_remembered_secret_and_every_pattern(tmp_path: Path) -> None:
    token = craft_token(sub="1", iat=1, exp=2)
    signature = token.rsplit(".", 1)[-1]
    log = tmp_path / "planted.txt"  # not a log name: the real scan must not trip on it
    log.write_text(
        "\n".join(
            [
                "2026-01-01 00:00:00.000 | INFO | GET /health выполнялся 0.10 мс",
                f"oops: {PASSWORD}",
                f"signature only: {signature}",
                "hash: $argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
                "header: authorization: xyz",
                "bearer: Bearer abc",
                "a JWT: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
            ]
        ),
        encoding="utf-8",
    )
    secrets = {PASSWORD: "a password", signature: "a signature"}
    leaks = {(leak.line, leak.what) for leak in find_leaks([log], secrets)}
    assert (1, "a password") not in leaks and not any(line == 1 for line, _ in leaks)
    assert (2, "a password") in leaks
    assert (3, "a signature") in leaks
    assert (4, "an argon2 hash") in leaks
    assert (5, "an Authorization header") in leaks
    assert (6, "a Bearer credential") in leaks
    assert (7, "a JWT") in leaks
    assert len(PATTERNS) == 4


@pytest.mark.usefixtures("pythonpath")
@pytest.mark.engine_independent("the scan of a suite of its own")
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_a_planted_secret_fails_the_whole_run(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """A suite whose tests all pass still fails when a log it wrote holds a secret.

    Under xdist too (`make test`): the secret is remembered in a worker, and the scan at the
    end, in the controller, still knows it and reads that worker's logs.
    """
    pytester.makeconftest('pytest_plugins = ["tests.log_hygiene"]\n')
    pytester.makepyfile(
        test_planted="""
from tests.log_hygiene import remember

def test_writes_a_log(tmp_path):
    secret = remember("planted-secret-value-123", "a planted secret")
    (tmp_path / "app.log").write_text(f"harmless\\nleaked {secret}\\n")

def test_writes_a_clean_log(tmp_path):
    (tmp_path / "other.log").write_text("nothing to see\\n")
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "-p", "no:cacheprovider", f"--rootdir={pytester.path}", *workers
    )
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*log hygiene: 2 log files scanned*: 1 leaks*"])
    result.stdout.fnmatch_lines(["LEAK *app.log:2: a planted secret"])
    assert "planted-secret-value-123" not in result.stdout.str()


@pytest.fixture
def pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    # runpytest_subprocess's child must import `tests.log_hygiene` from this checkout.
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.syspath_prepend(str(REPO_ROOT))


# Client text cannot forge a log line, in the real log file, plain and JSON.

FORGED = "2026-01-01 00:00:00.000 | INFO     | GET /admin выполнялся 1.00 мс | status=200"
CONTROLS = ["\n", "\r", "\r\n", "\x1b[2K\x1b[1G", "\x00", "\u2028", "\x85", "\x7f"]


def _forgeries() -> list[str]:
    return [f"alice{control}{FORGED}" for control in CONTROLS]


@pytest.mark.parametrize("log_json", [False, True], ids=["plain", "json"])
async def test_a_username_cannot_forge_a_log_line(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database, log_json: bool
) -> None:
    settings = dataclasses.replace(migrated, log_json=log_json)
    client: Client = await aiohttp_client(create_app(settings))  # type: ignore[assignment]
    alice = await make_user(database, "alice")
    headers = await auth(database, alice.id)
    requests = refusals = 0
    for username in _forgeries():
        # as a login name (a failed login is logged), a signup name, and in a path
        response = await client.post(
            "/login/access-token", data={"username": username, "password": "wrong password"}
        )
        assert response.status == 401
        response = await client.post(
            "/users/signup", json={"username": username, "password": "long enough password"}
        )
        assert response.status == 422
        path = "/users/" + "".join(
            f"%{byte:02X}" if byte < 0x30 or byte > 0x7A else chr(byte)
            for byte in username.encode()
        )
        response = await client.get(URL(path, encoded=True), headers=headers)
        assert response.status in (403, 404)  # 404 where a decoded `/` splits the path
        refusals += response.status == 403  # a 403 gets a warning line of its own
        requests += 3

    lines = log_lines(settings)
    text = settings.log_file.read_text(encoding="utf-8")
    assert not set(text) & {"\r", "\x00", "\x1b", "\u2028", "\x85", "\x7f"}, repr(text[-500:])
    if log_json:
        records = [json.loads(line)["record"] for line in lines]  # every line is one object
        messages = [record["message"] for record in records]
    else:
        assert not any(line.startswith("2026-01-01 00:00:00.000") for line in lines), lines
        messages = lines
    # one line per request plus one per failed login and per 403, whatever the text held
    assert refusals > 0
    assert len(messages) == requests + len(CONTROLS) + refusals, messages
    assert len([m for m in messages if "failed login for (not a username)" in m]) == len(CONTROLS)
    # the forged text is there only inside an escaped request path, never on its own
    forged_alone = [m for m in messages if m.lstrip().startswith(("2026-01-01", "GET /admin"))]
    assert forged_alone == [], forged_alone


# Refused logins and 403s reach the log, without their secrets.


async def _entries(settings: Settings) -> list[dict[str, Any]]:
    """The JSON log's records: message, level and the request's fields."""
    return [json.loads(line)["record"] for line in log_lines(settings)]


@pytest.fixture
async def json_client(aiohttp_client: ClientFactory, migrated: Settings) -> tuple[Client, Settings]:
    settings = dataclasses.replace(migrated, log_json=True, login_max_failures=2)
    client: Client = await aiohttp_client(create_app(settings))  # type: ignore[assignment]
    return client, settings


async def test_a_failed_login_is_logged_as_such_without_the_password(
    json_client: tuple[Client, Settings], database: Database
) -> None:
    client, settings = json_client
    await make_user(database, "alice")
    wrong = "Wrong-Password-4-Alice"
    statuses = []
    for _ in range(3):
        response = await client.post(
            "/login/access-token",
            data={"username": "alice", "password": wrong},
            headers={"X-Request-ID": f"login-{len(statuses)}"},
        )
        statuses.append(response.status)
    assert statuses == [401, 401, 429]

    records = await _entries(settings)
    logged = [
        (r["extra"]["request_id"], r["extra"]["status"])
        for r in records
        if r["message"].startswith("POST /login/access-token ")
    ]
    assert logged == [("login-0", 401), ("login-1", 401), ("login-2", 429)]
    warnings = [r for r in records if r["level"]["name"] == "WARNING"]
    assert [w["message"] for w in warnings] == [
        "failed login for 'alice'",
        "failed login for 'alice'",
        "Refused an anonymous caller: too_many_login_failures (POST /login/access-token)",
    ]
    assert [w["extra"]["request_id"] for w in warnings] == ["login-0", "login-1", "login-2"]
    text = settings.log_file.read_text(encoding="utf-8")
    assert wrong not in text and PASSWORD not in text


async def test_a_password_typed_as_the_username_is_not_logged(
    json_client: tuple[Client, Settings],
) -> None:
    client, settings = json_client
    typed = "my secret password!"
    response = await client.post("/login/access-token", data={"username": typed, "password": ""})
    assert response.status == 401
    text = settings.log_file.read_text(encoding="utf-8")
    assert typed not in text
    assert "failed login for (not a username)" in text


async def test_a_403_is_logged_with_its_status(
    json_client: tuple[Client, Settings], database: Database
) -> None:
    client, settings = json_client
    alice = await make_user(database, "alice")
    headers = await auth(database, alice.id)
    response = await client.get("/users/", headers={**headers, "X-Request-ID": "forbidden-1"})
    assert response.status == 403
    (record,) = [r for r in await _entries(settings) if r["message"].startswith("GET /users/ ")]
    assert (record["extra"]["status"], record["extra"]["request_id"]) == (403, "forbidden-1")
    assert record["level"]["name"] == "INFO"
    # And a warning of its own that says who was refused and why.
    (warning,) = [r for r in await _entries(settings) if r["level"]["name"] == "WARNING"]
    assert warning["message"] == (
        f"Refused user {alice.id}: not_enough_privileges (GET /users/)"
    ), warning
    assert warning["extra"]["request_id"] == "forbidden-1"
    text = settings.log_file.read_text(encoding="utf-8")
    token = headers["Authorization"].removeprefix("Bearer ")
    assert token not in text and token.rsplit(".", 1)[-1] not in text
    assert not re.search(r"Authorization|Bearer ", text)


def test_the_scan_is_hooked_into_this_session(request: pytest.FixtureRequest) -> None:
    hooks = request.config.pluginmanager.hook.pytest_sessionfinish.get_hookimpls()
    assert any(impl.function is log_hygiene.pytest_sessionfinish for impl in hooks)
