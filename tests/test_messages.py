"""The message catalogue: every client-facing text exists in English and in Russian."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from marshmallow import Schema, fields

from service import messages
from service.app import create_app
from service.errors import ApiError
from service.settings import Settings

pytestmark = pytest.mark.engine_independent("the answers' language")

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


# --- the headers of an answer whose language the request chose ----------------------------

ANSWERS_IN_EITHER_LANGUAGE = [
    ("GET", "/no/such/route", None),  # 404 from the router
    ("DELETE", "/health", None),  # 405
    ("GET", "/products/999999", None),  # 404 from a handler
    ("GET", "/users/me", None),  # 401
    ("POST", "/products/", {"name": "Tea", "price": "4.5"}),  # 422 with its `errors`
    ("POST", "/login/refresh", {"refresh_token": "x" * 5000}),  # 401
]


@pytest.mark.parametrize(("method", "path", "body"), ANSWERS_IN_EITHER_LANGUAGE)
@pytest.mark.parametrize(
    ("accept_language", "language"),
    [("ru", "ru"), ("ru-RU, en;q=0.5", "ru"), ("en", "en"), ("de, en;q=0.1", "en"), (None, "en")],
)
async def test_an_error_says_its_language_and_that_it_varies_by_accept_language(
    client: Client,
    method: str,
    path: str,
    body: dict[str, str] | None,
    accept_language: str | None,
    language: str,
) -> None:
    """Caches must not serve one language's answer to a client who asked for another."""
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = await client.request(method, path, json=body, headers=headers)
    problem = await response.json()
    assert response.status >= 400
    assert response.headers["Content-Language"] == language
    assert "Accept-Language" in vary(response)  # with or without the header in the request
    assert bool(CYRILLIC.search(problem["title"] + problem["detail"])) == (language == "ru")


async def test_an_answer_whose_language_does_not_depend_on_the_request_does_not_vary(
    client: Client,
) -> None:
    for path in ("/products/", "/health", "/openapi.json"):
        response = await client.get(path, headers={"Accept-Language": "ru"})
        assert response.status == 200, path
        assert "Content-Language" not in response.headers, path
        assert "Accept-Language" not in vary(response), path


def vary(response: Any) -> list[str]:
    return [part.strip() for part in response.headers.get("Vary", "").split(",")]


# --- the 422 `errors` map ----------------------------------------------------------------

RAISED_FIELD_MESSAGE = re.compile(r'ValidationError\(\s*f?"([^"]+)"|: \["([^"]+)"\]')


def _messages_of(field: fields.Field[Any]) -> set[str]:
    found = set(field.error_messages.values())
    for validator in field.validators:
        for attribute in ("message_min", "message_max", "message_all", "message_equal"):
            found.add(getattr(validator, attribute, None) or "")
        for attribute in ("error", "default_message"):
            found.add(getattr(validator, attribute, None) or "")
    for inner in ("inner", "key_field", "value_field"):
        if getattr(field, inner, None) is not None:
            found |= _messages_of(getattr(field, inner))
    return found - {""}


def loaded_schemas() -> list[Schema]:
    """Every schema a request is parsed with: those the routes declare for validation.

    Response schemas (their DateTime fields, say) are only ever dumped: their load
    messages can never reach a client's 422.
    """
    app = create_app(Settings())
    return [
        declared["schema"]
        for route in app.router.routes()
        for declared in getattr(route.handler, "__schemas__", ())
    ]


def schema_messages() -> set[str]:
    """Every message template a request schema can raise, marshmallow's included."""
    found: set[str] = set()
    schemas = loaded_schemas()
    assert len({type(schema) for schema in schemas}) >= 10  # the enumeration works at all
    for schema in schemas:
        found |= set(schema.error_messages.values())
        for field in schema.fields.values():
            found |= _messages_of(field)
    return found


def raised_messages() -> set[str]:
    """Messages our own code raises for the `errors` map (ValidationError, `{field: [...]}`)."""
    found = set()
    for path in SERVICE.rglob("*.py"):
        for match in RAISED_FIELD_MESSAGE.finditer(path.read_text(encoding="utf-8")):
            found.add(match.group(1) or match.group(2))
    return found


def test_every_field_message_has_a_russian_version() -> None:
    produced = schema_messages() | raised_messages()
    assert "Missing data for required field." in produced  # the enumeration works at all
    assert "Must be a JSON number." in produced
    missing = sorted(message for message in produced if message not in messages.FIELD_MESSAGES)
    assert missing == [], f"add these to messages.FIELD_MESSAGES: {missing}"
    for english, russian in messages.FIELD_MESSAGES.items():
        assert placeholders(english) == placeholders(russian), english
        assert CYRILLIC.search(russian), russian


@pytest.mark.parametrize(
    ("english", "russian"),
    [
        ("Unknown field.", "Неизвестное поле."),
        ("Longer than maximum length 128.", "Длиннее максимальной длины 128."),
        ("Must be greater than or equal to 0.", "Должно быть не меньше 0."),
        (
            "Must be greater than or equal to 1 and less than or equal to 1000.",
            "Должно быть от 1 до 1000.",
        ),
        ("'Me' is reserved.", "'Me' зарезервировано."),
        ("something new", "something new"),  # unknown: left as it is rather than lost
        # No request schema has an IP field; no generic template may garble it either
        # (it once came out as "Неверное значение типа address (IP).").
        ("Not a valid IP address.", "Not a valid IP address."),
    ],
)
def test_field_messages_are_translated_with_their_values(english: str, russian: str) -> None:
    assert messages.field_message(english, "ru") == russian
    assert messages.field_message(english, "en") == english


async def test_a_422_lists_its_field_messages_in_russian(client: Client) -> None:
    response = await client.post(
        "/users/signup",
        json={"username": "x", "is_superuser": True, "full_name": "y" * 200},
        headers={"Accept-Language": "ru"},
    )
    assert response.status == 422
    body = await response.json()
    assert body["title"] == messages.title(422, "ru")
    assert body["errors"] == {
        "username": ["2-64 символа из A-Z a-z 0-9 _ . -"],
        "password": ["Обязательное поле."],
        "is_superuser": ["Неизвестное поле."],
        "full_name": ["Длиннее максимальной длины 128."],
    }
    query = await client.get("/products/?limit=0&sort=cost", headers={"Accept-Language": "ru"})
    errors = (await query.json())["errors"]
    assert errors["limit"] == ["Должно быть от 1 до 1000."]
    assert errors["sort"][0].startswith("Должно быть одним из: ")
