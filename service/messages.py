"""The one catalogue of client-facing texts, in English (default) and Russian."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Final, Literal

Language = Literal["en", "ru"]

# key -> (English, Russian); `{name}` placeholders are filled by ApiError's params.
MESSAGES: Final[dict[str, tuple[str, str]]] = {
    "product_not_found": ("Product {product_id} not found", "Продукт {product_id} не найден"),
    "user_not_found": ("User not found", "Пользователь не найден"),
    "incorrect_login": ("Incorrect username or password", "Неверный логин или пароль"),
    "inactive_user": ("Inactive user", "Неактивный пользователь"),
    "not_authenticated": ("Not authenticated", "Требуется аутентификация"),
    "invalid_credentials": (
        "Could not validate credentials",
        "Не удалось проверить учётные данные",
    ),
    "not_enough_privileges": (
        "The user doesn't have enough privileges",
        "У пользователя недостаточно прав",
    ),
    "username_taken": (
        "The user with this username already exists",
        "Пользователь с таким именем уже существует",
    ),
    "superuser_self_delete": (
        "Super users are not allowed to delete themselves",
        "Суперпользователь не может удалить сам себя",
    ),
    "own_totp_reset": (
        "Turn your own two-factor authentication off with DELETE /users/me/totp",
        "Свою двухфакторную аутентификацию отключайте через DELETE /users/me/totp",
    ),
    "last_superuser": (
        "At least one active superuser must remain",
        "Должен остаться хотя бы один активный суперпользователь",
    ),
    "incorrect_password": ("Incorrect password", "Неверный пароль"),
    "invalid_refresh_token": (
        "The refresh token is invalid, expired or already used",
        "Токен обновления недействителен, истёк или уже использован",
    ),
    "session_not_found": ("Session not found", "Сеанс не найден"),
    "current_password_required": (
        "current_password is required to change your own password",
        "Для смены своего пароля нужен current_password",
    ),
    "signup_closed": ("Open signup is disabled", "Регистрация закрыта"),
    "too_many_login_failures": (
        "Too many failed login attempts; try again in {seconds} seconds",
        "Слишком много неудачных попыток входа; повторите через {seconds} с",
    ),
    "too_many_wrong_passwords": (
        "Too many wrong current passwords; this session has ended. Log in again "
        "and retry in {seconds} seconds",
        "Слишком много неверных текущих паролей; этот сеанс завершён. Войдите снова "
        "и повторите через {seconds} с",
    ),
    "too_many_requests": (
        "Too many requests; try again in {seconds} seconds",
        "Слишком много запросов; повторите через {seconds} с",
    ),
    "invalid_account_token": ("Invalid or expired token", "Недействительный или истёкший токен"),
    "no_email": (
        "The account has no email address",
        "У учётной записи нет адреса электронной почты",
    ),
    "email_already_verified": (
        "The email address is already verified",
        "Адрес электронной почты уже подтверждён",
    ),
    "email_not_verified": ("Email not verified", "Адрес электронной почты не подтверждён"),
    "second_factor_required": ("Second factor required", "Требуется второй фактор"),
    "invalid_code": ("Invalid code", "Неверный код"),
    "invalid_mfa_token": (
        "The second-factor token is invalid, expired or already used",
        "Токен второго фактора недействителен, истёк или уже использован",
    ),
    "totp_already_enabled": (
        "Two-factor authentication is already enabled",
        "Двухфакторная аутентификация уже включена",
    ),
    "totp_not_enabled": (
        "Two-factor authentication is not enabled",
        "Двухфакторная аутентификация не включена",
    ),
    "totp_not_pending": (
        "No two-factor enrollment is waiting to be confirmed",
        "Нет подключения двухфакторной аутентификации, ожидающего подтверждения",
    ),
    "two_factor_required": (
        "Two-factor authentication required",
        "Требуется двухфакторная аутентификация",
    ),
    "too_many_wrong_codes": (
        "Too many wrong codes; this session has ended. Log in again and retry in {seconds} seconds",
        "Слишком много неверных кодов; этот сеанс завершён. Войдите снова и повторите "
        "через {seconds} с",
    ),
    "recovery_accepted": (
        "If an active account has this address, a message with a link is on its way",
        "Если у активной учётной записи есть этот адрес, письмо со ссылкой уже в пути",
    ),
    "verification_accepted": (
        "A message with a link is on its way to your address",
        "Письмо со ссылкой уже в пути на ваш адрес",
    ),
    "route_not_found": ("No route matches {path}", "Нет маршрута {path}"),
    "method_not_allowed": (
        "Method {method} is not allowed here",
        "Метод {method} здесь не разрешён",
    ),
    "validation_failed": (
        "Request validation failed: {fields}",
        "Запрос не прошёл проверку: {fields}",
    ),
    "invalid_json": (
        "The request body is not valid JSON: {reason}",
        "Тело запроса не является корректным JSON: {reason}",
    ),
    "invalid_form": (
        "The form body cannot be read: {reason}",
        "Тело формы не удаётся прочитать: {reason}",
    ),
    "unsupported_media_type": (
        "Send the body as {expected}",
        "Отправьте тело запроса как {expected}",
    ),
    "incomplete_body": (
        "The request body could not be read in full",
        "Тело запроса не удалось прочитать полностью",
    ),
    "body_too_large": (
        "The request body is larger than {limit} bytes",
        "Тело запроса больше {limit} байт",
    ),
    "request_timeout": (
        "The request was not completed within {seconds} seconds",
        "Запрос не был выполнен за {seconds} с",
    ),
    "precondition_failed": (
        "The resource has changed: its ETag no longer matches If-Match",
        "Ресурс изменился: его ETag не совпадает с If-Match",
    ),
    "not_ready": ("The service is not ready: {reason}", "Сервис не готов: {reason}"),
    "invalid_value": (
        "The request holds a value that cannot be stored, such as a NUL character",
        "Запрос содержит значение, которое нельзя сохранить, например символ NUL",
    ),
    "database_unavailable": (
        "The database cannot be reached; try again shortly",
        "База данных недоступна; повторите запрос позже",
    ),
    "internal_error": (
        "An unexpected error occurred; it has been logged",
        "Произошла непредвиденная ошибка; она записана в журнал",
    ),
    "http_error": ("{reason}", "{reason}"),
    "unparsable_request": (
        "The request could not be read: {reason}",
        "Запрос не удалось прочитать: {reason}",
    ),
}

# The messages of a 422's `errors` map, as marshmallow and our fields raise them in
# English -> their Russian. `{name}` stands for a value filled in when raised.
FIELD_MESSAGES: Final[dict[str, str]] = {
    # marshmallow's own
    "Missing data for required field.": "Обязательное поле.",
    "Field may not be null.": "Поле не может быть null.",
    "Unknown field.": "Неизвестное поле.",
    "Invalid input type.": "Неверный тип данных.",
    "Invalid type.": "Неверный тип.",
    "Invalid value.": "Недопустимое значение.",
    "Not a valid string.": "Должно быть строкой.",
    "Not a valid utf-8 string.": "Должно быть строкой в UTF-8.",
    "Not a valid integer.": "Должно быть целым числом.",
    "Not a valid number.": "Должно быть числом.",
    "Number too large.": "Слишком большое число.",
    "Not a valid boolean.": "Должно быть true или false.",
    "Not a valid email address.": "Неверный адрес электронной почты.",
    "Not a valid list.": "Должно быть списком.",
    "Not a valid mapping type.": "Должно быть объектом.",
    "Special numeric values (nan or infinity) are not permitted.": (
        "Особые числа (nan, infinity) не допускаются."
    ),
    "String does not match expected pattern.": "Строка не соответствует шаблону.",
    "Shorter than minimum length {min}.": "Короче минимальной длины {min}.",
    "Longer than maximum length {max}.": "Длиннее максимальной длины {max}.",
    "Length must be between {min} and {max}.": "Длина должна быть от {min} до {max}.",
    "Length must be {equal}.": "Длина должна быть равна {equal}.",
    "Must be greater than or equal to {min}.": "Должно быть не меньше {min}.",
    "Must be less than or equal to {max}.": "Должно быть не больше {max}.",
    "Must be greater than or equal to {min} and less than or equal to {max}.": (
        "Должно быть от {min} до {max}."
    ),
    "Must be one of: {choices}.": "Должно быть одним из: {choices}.",
    # ours (service/schemas, jsonbody.py, routes)
    "2-64 characters of A-Z a-z 0-9 _ . -": "2-64 символа из A-Z a-z 0-9 _ . -",
    "'{value}' is reserved.": "'{value}' зарезервировано.",
    "Must be Unicode text without NUL or unpaired surrogates.": (
        "Должно быть текстом Unicode без NUL и непарных суррогатов."
    ),
    "Must be true or false.": "Должно быть true или false.",
    "Must be a JSON number.": "Должно быть числом JSON.",
    "Must be a number.": "Должно быть числом.",
    "Must be a number >= 0 with at most 2 decimals.": (
        "Должно быть числом >= 0 не более чем с 2 знаками после запятой."
    ),
    "Must be from 0 to 999999999999.99.": "Должно быть от 0 до 999999999999.99.",
    "Must have at most 2 decimal places.": "Не более 2 знаков после запятой.",
    "A JSON request body is required.": "Нужно тело запроса в JSON.",
    "Required to change your own password.": "Нужен для смены своего пароля.",
    "Required while email verification is on.": "Обязателен, пока включено подтверждение адреса.",
}


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ..., literal
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>.+?)"
        for index, part in enumerate(parts)
    )
    return re.compile(f"^{pattern}$", re.DOTALL)


# Longest first: "Must be greater than or equal to {min}." would also match the text of
# "... {min} and less than or equal to {max}.".
_FIELD_TEMPLATES: Final = [
    (_template_pattern(english), FIELD_MESSAGES[english])
    for english in sorted(FIELD_MESSAGES, key=len, reverse=True)
    if "{" in english
]


def field_message(text: str, language: Language) -> str:
    """A message of the `errors` map in `language` (unknown ones stay as they are)."""
    if language == "en":
        return text
    exact = FIELD_MESSAGES.get(text)
    if exact is not None:
        return exact
    for pattern, russian in _FIELD_TEMPLATES:
        match = pattern.match(text)
        if match is not None:
            return russian.format(**match.groupdict())
    return text


_TITLES_RU: Final[dict[int, str]] = {
    400: "Неверный запрос",
    401: "Не авторизован",
    403: "Доступ запрещён",
    404: "Не найдено",
    405: "Метод не разрешён",
    408: "Истекло время запроса",
    409: "Конфликт",
    412: "Условие не выполнено",
    413: "Слишком большой запрос",
    415: "Неподдерживаемый тип данных",
    422: "Ошибка проверки данных",
    429: "Слишком много запросов",
    500: "Внутренняя ошибка сервера",
    503: "Сервис недоступен",
}

_LANGUAGE_RANGE = re.compile(
    r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*$"
)


def render(key: str, language: Language, params: dict[str, object]) -> str:
    """The message `key` in `language`, with its placeholders filled."""
    english, russian = MESSAGES[key]
    template = russian if language == "ru" else english
    return template.format(**params)


def title(status: int, language: Language) -> str:
    """The problem title for an HTTP status: its reason phrase."""
    if language == "ru" and status in _TITLES_RU:
        return _TITLES_RU[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def preferred_language(accept_language: str | None) -> Language:
    """Russian when Accept-Language prefers any `ru` tag over English, else English."""
    if not accept_language:
        return "en"
    # primary tag -> (its best quality, minus the position where it got it): on equal
    # quality the range listed first is preferred, so `ru, en` is Russian.
    best: dict[str, tuple[float, int]] = {}
    for position, part in enumerate(accept_language.split(",")[:32]):
        match = _LANGUAGE_RANGE.match(part)
        if match is None:
            continue
        primary = match.group(1).lower()
        try:
            quality = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        if quality > best.get(primary, (0.0, 0))[0]:
            best[primary] = (quality, -position)
    russian = best.get("ru", (0.0, 0))
    return "ru" if russian[0] > 0 and russian > best.get("en", (0.0, 0)) else "en"
