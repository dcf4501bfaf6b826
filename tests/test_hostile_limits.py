"""Requests past the limits, sent raw to a real run.py: refused with 4xx, the server stays up."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.helpers_process import (
    ADMIN_PASSWORD,
    RawResponse,
    Server,
    bearer,
    call,
    connect,
    create_superuser,
    db_rows,
    http_request,
    login_token,
    raw_exchange,
    read_response,
    serving,
)

pytestmark = pytest.mark.process

MAX_BODY = 2048
JSON = {"Content-Type": "application/json"}
PROBLEM = "application/problem+json"


def assert_still_serving(server: Server) -> None:
    """A following request, a write, on a new connection, is served."""
    status, _, body = call(server, "POST", "/products/", {"name": "Still here", "price": 1})
    assert status == 201, body
    assert server.process.poll() is None


def assert_refused(response: RawResponse | None, *statuses: int) -> RawResponse:
    assert response is not None, "closed without an answer"
    assert response.status in statuses, (response.status, response.body)
    for leak in (b"Traceback", b'File "', b"aiohttp/"):
        assert leak not in response.body, response.body
    return response


def product_names(server: Server) -> set[str]:
    return {row[0] for row in db_rows(server.database, "SELECT name FROM products")}


def chunked(payload: bytes, size: int = 500) -> bytes:
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def big_product() -> bytes:
    body = json.dumps({"name": "Big", "price": 1, "description": "d" * (2 * MAX_BODY)}).encode()
    assert len(body) > MAX_BODY
    return body


def test_a_body_over_max_body_bytes_is_413_problem_json(tmp_path: Path) -> None:
    with serving(tmp_path, MAX_BODY_BYTES=str(MAX_BODY)) as server:
        body = big_product()
        form = b"username=admin&password=" + b"p" * (2 * MAX_BODY)
        cases = {
            "with Content-Length": http_request("POST", "/products/", body, headers=JSON),
            "chunked, no length": http_request(
                "POST",
                "/products/",
                chunked(body),
                headers={**JSON, "Transfer-Encoding": "chunked"},
            ),
            "login form": http_request(
                "POST",
                "/login/access-token",
                form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ),
        }
        for case, request in cases.items():
            response = assert_refused(raw_exchange(server.port, request), 413)
            assert response.is_problem, (case, response.headers)
            problem = response.json()
            assert problem["status"] == 413 and problem["detail"], (case, problem)

        # A huge declared length is refused from the headers alone, without waiting for
        # (or reading) a gigabyte.
        with connect(server.port, timeout=5) as sock:
            sock.sendall(http_request("POST", "/products/", headers=JSON, content_length=10**9))
            response = assert_refused(read_response(sock), 413)
            assert response.is_problem

        assert product_names(server) == set()
        assert_still_serving(server)


def test_a_large_upload_over_max_body_bytes_reads_its_413_without_a_reset(
    tmp_path: Path,
) -> None:
    # A client sending a big body at the speed of its link (here 6 MiB at ~2.5 MiB/s, not
    # a trickle) is answered 413 from the headers alone, but is still sending. Closed
    # before the body is in, the connection resets: the client's send fails, and most
    # clients then never read the answer. The server must read and drop the rest for long
    # enough (lingering) and close only then.
    with serving(tmp_path, MAX_BODY_BYTES=str(MAX_BODY)) as server:
        piece, pieces = b"x" * 65536, 96
        head = http_request("POST", "/products/", headers=JSON, content_length=len(piece) * pieces)
        with connect(server.port, timeout=15) as sock:
            sock.sendall(head)
            began = time.monotonic()
            sent = 0
            try:
                for _ in range(pieces):
                    sock.sendall(piece)
                    sent += 1
                    time.sleep(0.025)
            except (BrokenPipeError, ConnectionResetError) as error:
                elapsed = time.monotonic() - began
                pytest.fail(f"reset after {elapsed:.2f} s and {sent} of {pieces} pieces: {error!r}")
            response = assert_refused(read_response(sock), 413)
        print(f"{pieces} pieces sent in {time.monotonic() - began:.2f} s, then read the 413")
        assert response.is_problem, response.headers
        assert response.json()["status"] == 413
        assert_still_serving(server)


OVERSIZED_HEADS = {
    "9 KB header": http_request("GET", "/products/", headers={"X-Big": "b" * 9 * 1024}),
    "130 headers": http_request("GET", "/products/", headers={f"X-H{i}": "v" for i in range(130)}),
    "9 KB URL": http_request("GET", "/products/?q=" + "u" * 9 * 1024),
    "9 KB header name": http_request("GET", "/products/", headers={"X" * 9 * 1024: "v"}),
}


@pytest.mark.parametrize("case", OVERSIZED_HEADS)
def test_an_oversized_request_head_is_4xx_and_the_server_stays_up(
    tmp_path: Path, case: str
) -> None:
    with serving(tmp_path) as server:
        response = assert_refused(
            raw_exchange(server.port, OVERSIZED_HEADS[case]), 400, 413, 414, 431, 494
        )
        print(f"{case}: {response.status} {response.headers.get('content-type')} {response.body!r}")
        assert_still_serving(server)


def test_content_length_with_transfer_encoding_is_refused_and_nothing_is_smuggled(
    tmp_path: Path,
) -> None:
    with serving(tmp_path) as server:
        front = json.dumps({"name": "Front", "price": 1}).encode()
        smuggled = http_request(
            "POST",
            "/products/",
            json.dumps({"name": "Smuggled", "price": 1}).encode(),
            headers=JSON,
        )
        body = chunked(front) + smuggled
        # Read by its length, the body is all of it; read chunked, a second request
        # follows the first. A server must not pick one reading: refuse both.
        head = (
            b"POST /products/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body)
        )
        with connect(server.port, timeout=5) as sock:
            sock.sendall(head + body)
            response = assert_refused(read_response(sock), 400)
            print(
                f"CL+TE: {response.status} {response.headers.get('content-type')} {response.body!r}"
            )
            # Nothing more comes on this connection: no answer to a smuggled request.
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
            assert rest == b"", rest

        assert product_names(server) == set()
        assert_still_serving(server)
        assert product_names(server) == {"Still here"}


def test_limit_beyond_the_cap_and_other_bad_paging_are_422(tmp_path: Path) -> None:
    create_superuser(tmp_path)
    with serving(tmp_path) as server:
        admin = bearer(login_token(server, "admin", ADMIN_PASSWORD))
        cases = [
            ("/products/?limit=1001", "limit"),
            ("/products/?limit=1000000000000000000000", "limit"),
            ("/products/?limit=0", "limit"),
            ("/products/?limit=-1", "limit"),
            ("/products/?limit=ten", "limit"),
            ("/products/?skip=-1", "skip"),
            ("/users/?limit=1001", "limit"),
        ]
        for path, parameter in cases:
            status, headers, raw = call(server, "GET", path, headers=admin)
            assert status == 422, (path, status, raw)
            assert headers["Content-Type"].startswith("application/problem+json")
            problem = json.loads(raw)
            assert parameter in problem["errors"], (path, problem)
        status, _, raw = call(server, "GET", "/products/?limit=1000")
        assert status == 200, raw


def test_requests_refused_by_the_http_parser_get_problem_json_too(tmp_path: Path) -> None:
    # The contract: "Every error body is application/problem+json".
    with serving(tmp_path) as server:
        cl_and_te = http_request(
            "POST",
            "/products/",
            chunked(b"{}"),
            headers={**JSON, "Transfer-Encoding": "chunked"},
            content_length=7,
        )
        seen = {}
        for case, request in {**OVERSIZED_HEADS, "CL+TE": cl_and_te}.items():
            response = assert_refused(raw_exchange(server.port, request), 400, 413, 414, 431)
            seen[case] = (response.status, response.headers.get("content-type"))
        plain = {case: got for case, got in seen.items() if not got[1].startswith(PROBLEM)}
        assert plain == {}, plain
        log, output = server.log(), server.stderr()
    # Each refusal is logged once, as ours, and neither the log nor stderr quotes the
    # client's bytes back (aiohttp's own handler printed the start of an oversized header).
    refusals = [line for line in log.splitlines() if "Refused a request" in line]
    assert len(refusals) == len(seen), log
    assert all("status=400 request_id=" in line for line in refusals), refusals
    for text in (log, output):
        assert "bbbbbbbb" not in text and "uuuuuuuu" not in text and "XXXXXXXX" not in text
        assert "Error handling request" not in text


# The first bytes of a TLS 1.2 ClientHello: what a browser sends to https://host:8000/.
TLS_HELLO = bytes.fromhex("160301012c01000128030335ad7c0a") + bytes(range(32)) + b"\x00" * 64


def test_refusals_by_the_http_parser_carry_the_timing_and_request_id_headers(
    tmp_path: Path,
) -> None:
    # The contract: every response carries X-Process-Time-ms and X-Request-ID.
    with serving(tmp_path) as server:
        for case, request in {**OVERSIZED_HEADS, "TLS hello": TLS_HELLO}.items():
            response = assert_refused(raw_exchange(server.port, request), 400, 413, 414, 431)
            assert response.is_problem, case
            assert re.fullmatch(r"\d+\.\d{2}", response.headers.get("x-process-time-ms", "")), (
                case,
                response.headers,
            )
            assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), case


def test_non_http_first_bytes_are_answered_problem_json_and_logged_at_debug_only(
    tmp_path: Path,
) -> None:
    # A TLS ClientHello on the plain port, or a scanner's probe, as a connection's first
    # bytes is everyday noise on the internet: a warning for each would bury the ones that
    # matter. A broken request later on a connection is still a warning.
    with serving(tmp_path, LOG_LEVEL="DEBUG") as server:
        response = assert_refused(raw_exchange(server.port, TLS_HELLO), 400)
        assert response.is_problem
        with connect(server.port) as sock:
            sock.sendall(http_request("GET", "/health"))
            first = read_response(sock)
            sock.sendall(b"GE\x01T / HTTP/1.1\r\n\r\n")  # the second request on it
            second = read_response(sock)
        assert first is not None and first.status == 200
        assert_refused(second, 400)
        log = server.log()
    refusals = [line for line in log.splitlines() if "Refused a request" in line]
    assert len(refusals) == 2, refusals
    tls, later = refusals
    assert "| DEBUG    |" in tls, tls
    assert "| WARNING  |" in later, later
