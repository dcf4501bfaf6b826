"""The API's JSON for accounts, shared by the routes that answer with users or sessions."""

from __future__ import annotations

from typing import Any

from service.accounts.sessions import Tokens
from service.queries.sessions import Session
from service.queries.users import User


def user_json(user: User) -> dict[str, Any]:
    """The API's representation of a user: never the hash."""
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "full_name": user.full_name,
        "is_active": user.is_active,
        "is_superuser": user.is_superuser,
        "totp_enabled": user.totp_enabled,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


def session_json(session: Session, *, current: bool) -> dict[str, Any]:
    """The API's representation of a session: never a token."""
    return {
        "id": session.id,
        "created_at": session.created_at,
        "last_used_at": session.last_used_at,
        "user_agent": session.user_agent,
        "client": session.client,
        "current": current,
    }


def tokens_json(tokens: Tokens) -> dict[str, Any]:
    """The OAuth2 token response of a login or a refresh."""
    return {
        "access_token": tokens.access_token,
        "token_type": "bearer",
        "expires_in": tokens.expires_in,
        "refresh_token": tokens.refresh_token,
    }
