"""Assertions on the service's answers that tests of every feature share.

One `problem()` for every error answer, holding every rule of the contract's General part
(API.md), so that a test about products checks a 401 exactly as a test about users does.
"""

from __future__ import annotations

import json
import re
from typing import Any

# `mfa_token`: the extension member of a login's 403 "Second factor required".
PROBLEM_KEYS = {"type", "title", "status", "detail", "errors", "mfa_token"}
PROCESS_TIME = re.compile(r"^\d+\.\d{2}$")
# What must never reach a client: a stack trace, a source line, a password hash.
NEVER_IN_A_PROBLEM = ("Traceback", 'File "', "$argon2")


async def problem(response: Any, status: int, detail: str | None = None) -> dict[str, Any]:
    """Assert an RFC 9457 problem with `status` (and `detail`) and return its body.

    It carries the headers every response does (X-Request-ID, X-Process-Time-ms), a 401
    says how to authenticate, and nothing in it shows the service's insides.
    """
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "application/problem+json", response.content_type
    for secret in NEVER_IN_A_PROBLEM:
        assert secret not in text
    body: dict[str, Any] = json.loads(text)
    assert set(body) <= PROBLEM_KEYS, body
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if detail is not None:
        assert body["detail"] == detail, body
    if status == 401:
        assert response.headers.get("WWW-Authenticate") == "Bearer"
    # Its texts are in the language Accept-Language chose: it says which, and that it varies.
    assert response.headers.get("Content-Language") in ("en", "ru"), response.headers
    assert "accept-language" in response.headers.get("Vary", "").lower(), response.headers
    assert PROCESS_TIME.match(response.headers["X-Process-Time-ms"])
    assert response.headers["X-Request-ID"]
    return body


async def validation_errors(response: Any, *fields: str) -> dict[str, list[str]]:
    """Assert a 422 problem whose `errors` name at least `fields`; return the errors."""
    body = await problem(response, 422)
    errors: dict[str, list[str]] = body["errors"]
    assert errors, body
    for messages in errors.values():
        assert messages
        assert all(isinstance(m, str) and m for m in messages)
    assert body["detail"].startswith("Request validation failed: ")
    for field in fields:
        assert field in errors, errors
    return errors
