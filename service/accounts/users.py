"""Users: create, read, change and delete them, and the rules that span users.

- Only a superuser changes or reads another user, or sets anyone's `is_active`/
  `is_superuser`; with REQUIRE_TOTP_FOR_SUPERUSERS on, only one with TOTP on
  (service/accounts/powers.py).
- Changing one's own password needs the current one; a new password refuses the user's
  older access tokens and ends his other sessions; a deactivation ends all of them.
- Wrong current passwords are counted per user like failed logins (same limits): past
  LOGIN_MAX_FAILURES in the window the check is refused and the asking session ends, so
  a stolen access token is no password oracle.
- There is always an active superuser: demoting, deactivating or deleting the last one
  is refused (LastSuperuser), checked in the unit of work that writes the change, under
  the SUPERUSERS lock that every such change takes, on every node.
- A superuser never deletes himself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from loguru import logger

from service.accounts import throttle
from service.accounts.context import Accounts
from service.accounts.errors import (
    CurrentPasswordRequired,
    EmailRequired,
    IncorrectPassword,
    LastSuperuser,
    PasswordChecksLocked,
    SelfDeleteRefused,
    SignupClosed,
    UsernameTaken,
    UserNotFound,
)
from service.accounts.powers import check_superuser_powers
from service.db import Connection, Database
from service.passwords import PasswordHasher
from service.queries import sessions
from service.queries import users as user_queries
from service.queries.users import User, UserPage
from service.schemas.users import username_problem

_FLAGS = frozenset({"is_active", "is_superuser"})
# Held (Connection.lock) by each unit of work that takes an active superuser away.
SUPERUSERS = "users:active-superusers"


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    password: str
    email: str | None = None
    full_name: str | None = None
    is_active: bool = True
    is_superuser: bool = False


async def sign_up(accounts: Accounts, new: NewUser) -> User:
    """An active regular user, if OPEN_SIGNUP allows; the flags asked for are ignored."""
    if not accounts.settings.open_signup:
        raise SignupClosed
    if accounts.settings.require_verified_email and not new.email:
        raise EmailRequired
    regular = NewUser(new.username, new.password, new.email, new.full_name)
    return await _create(accounts.database, accounts.passwords, regular)


async def create_user(accounts: Accounts, new: NewUser) -> User:
    """A user with the flags asked for (the caller is a superuser)."""
    return await _create(accounts.database, accounts.passwords, new)


@dataclass(frozen=True, slots=True)
class SuperuserOutcome:
    created: bool
    user: User | None  # None: the name was taken meanwhile, and freed again


async def create_superuser(
    database: Database, passwords: PasswordHasher, *, username: str, password: str
) -> SuperuserOutcome:
    """Create `username` as an active superuser unless the name is in use.

    Takes the database and hasher rather than an `Accounts`: the command line that calls
    it has no app, nor a signing key to give.
    """
    async with database.read() as conn:
        existing = await user_queries.get_by_username(conn, username=username)
    if existing is not None:
        return SuperuserOutcome(created=False, user=existing)
    new = NewUser(username=username, password=password, is_superuser=True)
    try:
        return SuperuserOutcome(created=True, user=await _create(database, passwords, new))
    except UsernameTaken:  # created by someone else a moment ago: superuser or not?
        async with database.read() as conn:
            existing = await user_queries.get_by_username(conn, username=username)
        return SuperuserOutcome(created=False, user=existing)


async def list_users(accounts: Accounts, *, skip: int, limit: int) -> UserPage:
    """A page of users ordered by id, and how many there are."""
    async with accounts.database.read(snapshot=True) as conn:
        return await user_queries.list_users(conn, skip=skip, limit=limit)


async def find_user(accounts: Accounts, *, by: User, username: str) -> User:
    """The user named `username` (ignoring case), for himself or a superuser.

    Anyone else is refused whether or not the name exists, so that names cannot be probed.
    """
    if username.lower() == by.username.lower():
        return by
    check_superuser_powers(accounts.settings, by)
    user = None
    if username_problem(username) is None:  # anything else names no one (a NUL, say)
        async with accounts.database.read() as conn:
            user = await user_queries.get_by_username(conn, username=username)
    if user is None:
        raise UserNotFound
    return user


async def update_me(accounts: Accounts, *, me: User, changes: Mapping[str, object]) -> User:
    """Change the caller's username, email or full name."""
    async with accounts.database.transaction() as conn:
        return await _update(conn, me.id, changes)


async def update_user(
    accounts: Accounts, *, by: User, session: str, user_id: int, changes: Mapping[str, object]
) -> User:
    """Change a user as `by` (whose current session is `session`) may.

    `changes` may hold `password` (with `current_password` when it is one's own) and,
    for a superuser only, the flags.
    """
    if user_id != by.id or _FLAGS & changes.keys():
        check_superuser_powers(accounts.settings, by)
    fields = dict(changes)
    current_password = fields.pop("current_password", None)
    own = user_id == by.id
    if "password" in fields:
        if own:
            await _check_password(accounts, by, current_password, session=session)
        fields["hashed_password"] = await accounts.passwords.hash(str(fields.pop("password")))
    async with accounts.database.transaction() as conn:
        return await _update(conn, user_id, fields, keep_session=session if own else None)


async def change_own_password(
    accounts: Accounts, *, me: User, session: str, current_password: str, new_password: str
) -> None:
    """A new password for the caller: older tokens refused, his other sessions ended."""
    await _check_password(accounts, me, current_password, session=session)
    new_hash = await accounts.passwords.hash(new_password)
    async with accounts.database.transaction() as conn:
        await _update(conn, me.id, {"hashed_password": new_hash}, keep_session=session)


async def check_current_password(
    accounts: Accounts, *, me: User, session: str, password: str
) -> None:
    """The caller's password, checked and counted as for a password change.

    IncorrectPassword, or PasswordChecksLocked (ending `session`) past the limit.
    """
    await _check_password(accounts, me, password, session=session)


async def set_password(conn: Connection, *, user_id: int, hashed_password: str) -> None:
    """A new password set without the old one (a reset link), in the caller's unit of work.

    As when a superuser sets it: older access tokens are refused and every session ends.
    """
    await _update(conn, user_id, {"hashed_password": hashed_password})


async def delete_me(accounts: Accounts, *, me: User) -> None:
    """Delete the caller's own account; a superuser may not."""
    async with accounts.database.transaction() as conn:
        fresh = await user_queries.get_for_update(conn, user_id=me.id)  # promoted meanwhile?
        if fresh is None or fresh.is_superuser:
            raise SelfDeleteRefused
        await user_queries.delete_user(conn, user_id=me.id)


async def delete_user(accounts: Accounts, *, by: User, user_id: int) -> None:
    """Delete another user (the caller is a superuser); never the last active superuser."""
    if user_id == by.id:
        raise SelfDeleteRefused
    async with accounts.database.transaction() as conn:
        target = await user_queries.get_for_update(conn, user_id=user_id)
        if target is None:
            raise UserNotFound
        await _keep_a_superuser(conn, target, {"is_active": False})
        await user_queries.delete_user(conn, user_id=user_id)


async def _create(database: Database, passwords: PasswordHasher, new: NewUser) -> User:
    # Hashed before the unit of work: the write lock is not held for ~0.1 s of argon2.
    hashed = await passwords.hash(new.password)
    try:
        async with database.transaction() as conn:
            return await user_queries.create_user(
                conn,
                username=new.username,
                hashed_password=hashed,
                email=new.email,
                full_name=new.full_name,
                is_active=new.is_active,
                is_superuser=new.is_superuser,
            )
    except user_queries.UsernameTaken:
        raise UsernameTaken from None


async def _update(
    conn: Connection,
    user_id: int,
    changes: Mapping[str, object],
    *,
    keep_session: str | None = None,
) -> User:
    """Change the user inside the caller's unit of work, keeping every rule that spans users.

    The user is read here, inside the unit of work, and locked: a copy read earlier (the
    caller, as the auth middleware saw him), or one a parallel unit of work is changing,
    would write back flags another request just changed.
    A new password refuses the user's older access tokens; it, and a deactivation, also
    end the user's sessions, except `keep_session` (the caller's own, changing himself).
    """
    target = await user_queries.get_for_update(conn, user_id=user_id)
    if target is None:
        raise UserNotFound
    await _keep_a_superuser(conn, target, changes)
    new_password = "hashed_password" in changes
    try:
        updated = await user_queries.update_user(
            conn, current=target, changes=changes, revoke_tokens=new_password
        )
    except user_queries.UsernameTaken:
        raise UsernameTaken from None
    if new_password or changes.get("is_active") is False:
        await sessions.end_user_sessions(conn, user_id=target.id, keep=keep_session)
    return updated


async def _keep_a_superuser(conn: Connection, target: User, changes: Mapping[str, object]) -> None:
    """LastSuperuser if the change would leave no active superuser.

    `target` is locked by the caller. Two superusers demoting (or deleting) each other
    at once would each count the other: the SUPERUSERS lock makes the second count after
    the first has committed.
    """
    stays = changes.get("is_superuser", target.is_superuser) and changes.get(
        "is_active", target.is_active
    )
    demoted = target.is_superuser and target.is_active and not stays
    if not demoted:
        return
    await conn.lock(SUPERUSERS)
    if await user_queries.count_other_active_superusers(conn, user_id=target.id) == 0:
        raise LastSuperuser


async def _check_password(
    accounts: Accounts, user: User, password: object, *, session: str
) -> None:
    """IncorrectPassword, or PasswordChecksLocked (ending `session`) past the limit.

    The attempt is counted before the hash and cleared if it matches: parallel guesses
    cannot slip under the limit (each checks and counts under the key's lock).
    """
    if password is None:
        raise CurrentPasswordRequired
    key = throttle.current_password_key(user.id)
    wait = await throttle.count_user_check(
        accounts.database, accounts.settings, key, session=session, now=accounts.clock()
    )
    if wait:
        logger.warning(f"too many wrong current passwords for user {user.id}: his session ended")
        raise PasswordChecksLocked(wait)
    matches, _ = await accounts.passwords.verify(str(password), user.hashed_password)
    if not matches:
        logger.warning(f"wrong current password for user {user.id}")
        raise IncorrectPassword
    async with accounts.database.transaction() as conn:
        await throttle.clear(conn, key)
