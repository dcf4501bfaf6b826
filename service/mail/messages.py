"""The messages the accounts send: a password reset link, an email verification link.

Plain text plus HTML, in English or Russian (the language of the request that caused
them). The link names a page the operator serves at PUBLIC_URL, with the token in the
fragment (`#token=...`), which browsers never send to a server, so no access log holds it.
"""

from __future__ import annotations

import enum
import html
from dataclasses import dataclass
from typing import Final

from service.messages import Language


class Kind(enum.StrEnum):
    RESET_PASSWORD = "reset_password"  # noqa: S105 (a kind of message)
    VERIFY_EMAIL = "verify_email"


# The page each kind of link opens, under PUBLIC_URL.
PAGES: Final[dict[Kind, str]] = {
    Kind.RESET_PASSWORD: "/reset-password",
    Kind.VERIFY_EMAIL: "/verify-email",
}


@dataclass(frozen=True, slots=True)
class Composed:
    subject: str
    text: str
    html: str


# kind -> language -> (subject, paragraphs before the link, paragraphs after it)
_TEXTS: Final[dict[Kind, dict[Language, tuple[str, tuple[str, ...], tuple[str, ...]]]]] = {
    Kind.RESET_PASSWORD: {
        "en": (
            "Reset your password",
            (
                "Hello {username},",
                "Someone asked to reset the password of your account."
                " To choose a new one, open this link within {minutes} minutes:",
            ),
            (
                "The link works once. If you did not ask for it, ignore this message:"
                " your password stays as it is.",
            ),
        ),
        "ru": (
            "Сброс пароля",
            (
                "Здравствуйте, {username}!",
                "Кто-то запросил сброс пароля вашей учётной записи."
                " Чтобы задать новый пароль, откройте эту ссылку в течение {minutes} мин.:",
            ),
            (
                "Ссылка действует один раз. Если вы не запрашивали сброс, просто"
                " проигнорируйте это письмо: пароль останется прежним.",
            ),
        ),
    },
    Kind.VERIFY_EMAIL: {
        "en": (
            "Confirm your email address",
            (
                "Hello {username},",
                "To confirm that this address is yours, open this link within {minutes} minutes:",
            ),
            ("If you did not ask for it, ignore this message.",),
        ),
        "ru": (
            "Подтверждение адреса электронной почты",
            (
                "Здравствуйте, {username}!",
                "Чтобы подтвердить, что этот адрес ваш, откройте"
                " эту ссылку в течение {minutes} мин.:",
            ),
            ("Если вы этого не запрашивали, просто проигнорируйте это письмо.",),
        ),
    },
}


def link(public_url: str, kind: Kind, token: str) -> str:
    """The link a message carries: the operator's page, the token in the fragment."""
    return f"{public_url.rstrip('/')}{PAGES[kind]}#token={token}"


def compose(kind: Kind, language: Language, *, username: str, url: str, minutes: int) -> Composed:
    """The message of `kind` in `language`, with its link."""
    subject, before, after = _TEXTS[kind][language]
    values = {"username": username, "minutes": minutes}
    head = [paragraph.format(**values) for paragraph in before]
    tail = [paragraph.format(**values) for paragraph in after]
    text = "\n\n".join([*head, url, *tail]) + "\n"
    escaped = html.escape(url, quote=True)
    # One paragraph a line: a mail line must stay under 998 bytes.
    paragraphs = [f"<p>{html.escape(p)}</p>" for p in head]
    paragraphs.append(f'<p><a href="{escaped}">{escaped}</a></p>')
    paragraphs += [f"<p>{html.escape(p)}</p>" for p in tail]
    body = "\n".join(paragraphs)
    page = f'<!DOCTYPE html>\n<html lang="{language}"><body>\n{body}\n</body></html>\n'
    return Composed(subject=subject, text=text, html=page)
