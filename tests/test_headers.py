"""Headers on every answer: no Server version, nosniff, no-store on account data, CSP on docs."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from service.settings import Settings
from tests.conftest import log_lines
from tests.helpers_auth import PASSWORD, bearer, login, login_token, signup
from tests.helpers_process import http_request, raw_exchange, serving

Client = TestClient  # type: ignore[type-arg]

ANSWERS_WITHOUT_USER_DATA = [
    ("GET", "/health"),
    ("GET", "/products/"),
    ("GET", "/products/999999"),  # a problem+json 404
    ("GET", "/no/such/route"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/static/redoc/redoc.standalone.js"),
]


def assert_common(headers: dict[str, str] | object, what: str) -> None:
    server = headers.get("Server", "")  # type: ignore[attr-defined]
    assert not re.search(r"\d", server), f"{what}: Server names a version: {server!r}"
    assert "aiohttp" not in server.lower() and "python" not in server.lower(), (what, server)
    assert headers.get("X-Content-Type-Options") == "nosniff", what  # type: ignore[attr-defined]


@pytest.mark.parametrize(("method", "path"), ANSWERS_WITHOUT_USER_DATA)
async def test_every_answer_has_nosniff_and_no_server_version(
    client: Client, method: str, path: str
) -> None:
    response = await client.request(method, path)
    await response.read()
    assert_common(response.headers, path)


async def test_every_answer_about_accounts_is_no_store(client: Client) -> None:
    answers = [await signup(client, "headers_alice")]
    token = await login_token(client, "headers_alice")
    answers.append(await login(client, "headers_alice"))
    answers.append(await login(client, "headers_alice", PASSWORD + "x"))  # a 401
    for path in ("/users/me", "/users/me/sessions", "/users/headers_alice", "/users/"):
        answers.append(await client.get(path, headers=bearer(token)))
    answers.append(await client.get("/users/me"))  # 401: no token
    answers.append(await client.post("/login/test-token", headers=bearer(token)))
    for response in answers:
        await response.read()
        what = f"{response.method} {response.url.path} {response.status}"
        assert response.headers.get("Cache-Control") == "no-store", what
        assert response.headers.get("Pragma") == "no-cache", what
        assert_common(response.headers, what)


async def test_the_documentation_pages_allow_only_our_own_assets_and_no_framing(
    client: Client,
) -> None:
    for path in ("/docs", "/redoc"):
        response = await client.get(path)
        page = await response.text()
        assert response.status == 200
        policy = dict(
            directive.strip().split(" ", 1)
            for directive in response.headers["Content-Security-Policy"].split(";")
        )
        assert policy["default-src"] == "'none'", policy
        assert policy["frame-ancestors"] == "'none'", policy
        for directive in ("script-src", "style-src", "connect-src", "img-src"):
            sources = policy[directive].split()
            assert sources[0] == "'self'", (path, directive, sources)
            assert "'unsafe-eval'" not in sources, (path, directive)
            assert not [s for s in sources if s.startswith(("http", "*"))], (directive, sources)
        # Scripts: only our files and the page's own inline code, by hash. (ReDoc styles
        # itself with inline CSS as it renders: CSS only, on that page only.)
        assert "'unsafe-inline'" not in policy["script-src"], path
        if path == "/docs":
            assert "'unsafe-inline'" not in policy["style-src"], path
        # Every inline script of the page is allowed by its hash, and nothing else inline.
        inline = re.findall(r"<script>", page)
        hashes = [s for s in policy["script-src"].split() if s.startswith("'sha256-")]
        assert len(hashes) == len(inline), (path, hashes, inline)


async def test_log_lines_escape_bidirectional_and_format_characters(
    client: Client, migrated: Settings
) -> None:
    # U+202E RIGHT-TO-LEFT OVERRIDE, the U+2066-2069 isolates, U+200B ZERO WIDTH SPACE,
    # U+FEFF: each makes a line read otherwise than it is.
    characters = ["\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200b", "\ufeff", "\u061c"]
    for character in characters:
        path = f"/products/1{quote(character)}gpj.exe"
        response = await client.get(URL(path, encoded=True))
        assert response.status == 404
    text = migrated.log_file.read_text(encoding="utf-8")
    assert not set(text) & set(characters), [c for c in characters if c in text]
    lines = log_lines(migrated)
    for character in characters:
        escaped = character.encode("unicode_escape").decode()
        assert any(escaped in line for line in lines), (escaped, lines)


@pytest.mark.process
def test_a_parser_refusal_has_nosniff_and_no_server_version(tmp_path: Path) -> None:
    oversized = http_request("GET", "/products/", headers={"X-Big": "b" * 20_000})
    with serving(tmp_path) as server:
        response = raw_exchange(server.port, oversized)
    assert response is not None and response.is_problem, response
    assert_common(
        {
            "Server": response.headers.get("server", ""),
            "X-Content-Type-Options": response.headers.get("x-content-type-options"),
        },
        "parser refusal",
    )
