"""The message catalogue: every client-facing text exists in English and in Russian."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service import messages
from service.errors import ApiError

Client = TestClient[web.Request, web.Application]

SERVICE = Path(__file__).resolve().parent.parent / "service"
CYRILLIC = re.compile("[А-Яа-яЁё]")
ERROR_CLASSES = "ApiError|BadRequest|Unauthorized|Forbidden|NotFound|Conflict|ServiceUnavailable"
RAISED_KEY = re.compile(rf'\b(?:{ERROR_CLASSES})\(\s*"([a-z_]+)"')


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("key", sorted(messages.MESSAGES))
def test_every_message_has_both_languages(key: str) -> None:
    english, russian = messages.MESSAGES[key]
    assert english.strip()
    assert russian.strip()
    assert placeholders(english) == placeholders(russian)
    if key != "http_error":  # only a placeholder: the reason phrase itself
        assert CYRILLIC.search(russian), russian
        assert not CYRILLIC.search(english), english


def test_every_key_the_code_raises_is_in_the_catalogue() -> None:
    raised = {
        key
        for path in SERVICE.rglob("*.py")
        for key in RAISED_KEY.findall(path.read_text(encoding="utf-8"))
    }
    assert raised  # the pattern still finds the call sites
    assert raised <= set(messages.MESSAGES), raised - set(messages.MESSAGES)
    subclass_defaults = {
        cls.message_key for cls in ApiError.__subclasses__() if "message_key" in vars(cls)
    }
    assert subclass_defaults <= set(messages.MESSAGES)


@pytest.mark.parametrize(
    "status", [400, 401, 403, 404, 405, 408, 409, 412, 413, 415, 422, 429, 500, 503]
)
def test_every_status_the_service_answers_has_a_russian_title(status: int) -> None:
    assert CYRILLIC.search(messages.title(status, "ru"))
    assert not CYRILLIC.search(messages.title(status, "en"))


async def test_auth_errors_come_in_russian_too(client: Client) -> None:
    login = await client.post(
        "/login/access-token",
        data={"username": "nobody", "password": "wrong password"},
        headers={"Accept-Language": "ru"},
    )
    assert login.status == 401
    assert (await login.json())["detail"] == "Неверный логин или пароль"
    me = await client.get("/users/me", headers={"Accept-Language": "ru-RU, en;q=0.5"})
    body = await me.json()
    assert me.status == 401
    assert body["title"] == "Не авторизован"
    assert CYRILLIC.search(body["detail"])
