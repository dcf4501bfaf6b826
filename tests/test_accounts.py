"""The account rules without HTTP: service.accounts called directly on a migrated database."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from service.accounts import login, sessions, totp, users
from service.accounts.context import Accounts, Caller
from service.accounts.errors import (
    IncorrectLogin,
    InvalidRefreshToken,
    LastSuperuser,
    LoginLocked,
    NotAllowed,
    SelfDeleteRefused,
    UserNotFound,
)
from service.db import Database
from service.passwords import PasswordHasher
from service.queries.users import User
from service.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.helpers_auth import PASSWORD, make_user, session_id, user_row

CALLER = Caller(address="203.0.113.7", user_agent="tests")


@pytest.fixture
async def accounts(migrated: Settings, database: Database) -> AsyncIterator[Accounts]:
    """The account rules on the test's database, locking out after 2 failures."""
    hasher = PasswordHasher(threads=1)
    settings = dataclasses.replace(migrated, login_max_failures=2)
    yield Accounts(
        database=database, passwords=hasher, settings=settings, token_key=TEST_SECRET_KEY
    )
    hasher.close()


async def _open_sessions(database: Database, user_id: int) -> list[str]:
    async with database.read() as conn:
        rows = await conn.fetch_all(
            "SELECT id FROM sessions WHERE user_id = :id AND ended_at IS NULL ORDER BY id",
            {"id": user_id},
        )
    return [row["id"] for row in rows]


async def _failures(database: Database) -> list[tuple[str, str, int]]:
    async with database.read() as conn:
        rows = await conn.fetch_all("SELECT username, client, failures FROM login_failures")
    return [(row[0], row[1], row[2]) for row in rows]


async def _second_session(accounts: Accounts, user: User) -> None:
    """Log the user in: a session besides the one make_user opened."""
    await login.log_in(accounts, username=user.username, password=PASSWORD, caller=CALLER)
    assert len(await _open_sessions(accounts.database, user.id)) == 2


async def test_the_last_active_superuser_is_never_demoted_deactivated_or_deleted(
    accounts: Accounts, database: Database
) -> None:
    root = await make_user(database, "root", is_superuser=True)
    other = await make_user(database, "other", is_superuser=True, is_active=False)
    before = await user_row(database, root.id)
    for changes in ({"is_superuser": False}, {"is_active": False}):
        with pytest.raises(LastSuperuser):
            await users.update_user(
                accounts, by=root, session=session_id(root.id), user_id=root.id, changes=changes
            )
    with pytest.raises(LastSuperuser):  # another superuser deletes him: only if one stays
        await users.delete_user(accounts, by=other, user_id=root.id)
    assert await user_row(database, root.id) == before

    await users.update_user(
        accounts,
        by=root,
        session=session_id(root.id),
        user_id=other.id,
        changes={"is_active": True},
    )
    demoted = await users.update_user(
        accounts,
        by=root,
        session=session_id(root.id),
        user_id=root.id,
        changes={"is_superuser": False},
    )
    assert demoted.is_superuser is False


async def test_a_superuser_never_deletes_himself_and_users_never_change_others(
    accounts: Accounts, database: Database
) -> None:
    root = await make_user(database, "root", is_superuser=True)
    alice = await make_user(database, "alice")
    bob = await make_user(database, "bob")
    with pytest.raises(SelfDeleteRefused):
        await users.delete_user(accounts, by=root, user_id=root.id)
    with pytest.raises(SelfDeleteRefused):
        await users.delete_me(accounts, me=root)
    for user_id, changes in ((bob.id, {"full_name": "Bob"}), (alice.id, {"is_superuser": True})):
        with pytest.raises(NotAllowed):
            await users.update_user(
                accounts, by=alice, session=session_id(alice.id), user_id=user_id, changes=changes
            )
    assert (await user_row(database, alice.id) or {})["is_superuser"] in (0, False)
    assert (await user_row(database, bob.id) or {})["full_name"] is None


async def test_authenticate_answers_the_same_for_an_unknown_user_and_a_wrong_password(
    accounts: Accounts, database: Database
) -> None:
    alice = await make_user(database, "alice")
    assert await login.authenticate(accounts, username="nobody", password=PASSWORD) is None
    assert await login.authenticate(accounts, username="alice", password="wrong-pass") is None
    found = await login.authenticate(accounts, username="ALICE", password=PASSWORD)
    assert found is not None and found.id == alice.id
    for username, password in (("nobody", PASSWORD), ("alice", "wrong-pass")):
        with pytest.raises(IncorrectLogin):
            await login.log_in(accounts, username=username, password=password, caller=CALLER)
    # Each counted one failure, under its own name and the caller's address.
    assert sorted(await _failures(database)) == [
        ("alice", "203.0.113.7", 1),
        ("nobody", "203.0.113.7", 1),
    ]


async def test_after_max_failures_even_the_right_password_is_locked_out(
    accounts: Accounts, database: Database
) -> None:
    await make_user(database, "alice")
    for _ in range(2):
        with pytest.raises(IncorrectLogin):
            await login.log_in(accounts, username="alice", password="wrong-pass", caller=CALLER)
    with pytest.raises(LoginLocked) as locked:
        await login.log_in(accounts, username="alice", password=PASSWORD, caller=CALLER)
    assert 0 < locked.value.seconds <= accounts.settings.login_failure_window_seconds
    # Another address is another pair: it may log in, and its success clears only its own.
    elsewhere = dataclasses.replace(CALLER, address="198.51.100.1")
    await login.log_in(accounts, username="alice", password=PASSWORD, caller=elsewhere)
    assert await _failures(database) == [("alice", "203.0.113.7", 2)]


async def test_a_success_clears_the_failures(accounts: Accounts, database: Database) -> None:
    await make_user(database, "alice")
    with pytest.raises(IncorrectLogin):
        await login.log_in(accounts, username="alice", password="wrong-pass", caller=CALLER)
    await login.log_in(accounts, username="alice", password=PASSWORD, caller=CALLER)
    assert await _failures(database) == []


async def test_own_password_change_ends_the_other_sessions_and_keeps_the_current_one(
    accounts: Accounts, database: Database
) -> None:
    alice = await make_user(database, "alice")
    await _second_session(accounts, alice)
    await users.change_own_password(
        accounts,
        me=alice,
        session=session_id(alice.id),
        current_password=PASSWORD,
        new_password="a brand new password",
    )
    assert await _open_sessions(database, alice.id) == [session_id(alice.id)]
    row = await user_row(database, alice.id) or {}
    assert row["token_version"] == alice.token_version + 1  # older access tokens refused


async def test_a_superuser_resetting_a_password_or_deactivating_ends_every_session(
    accounts: Accounts, database: Database
) -> None:
    root = await make_user(database, "root", is_superuser=True)
    for name, changes in (
        ("alice", {"password": "set by the root"}),
        ("bob", {"is_active": False}),
    ):
        user = await make_user(database, name)
        await _second_session(accounts, user)
        await users.update_user(
            accounts, by=root, session=session_id(root.id), user_id=user.id, changes=changes
        )
        assert await _open_sessions(database, user.id) == [], name
    assert await _open_sessions(database, root.id) == [session_id(root.id)]


async def test_a_refresh_token_rotates_and_a_replayed_one_ends_its_session(
    accounts: Accounts, database: Database
) -> None:
    alice = await make_user(database, "alice")
    first = await login.log_in(accounts, username="alice", password=PASSWORD, caller=CALLER)
    second = await sessions.refresh(accounts, refresh_token=first.refresh_token)
    assert second.refresh_token != first.refresh_token
    [opened] = [s for s in await _open_sessions(database, alice.id) if s != session_id(alice.id)]

    with pytest.raises(InvalidRefreshToken):  # the spent one again: stolen
        await sessions.refresh(accounts, refresh_token=first.refresh_token)
    assert opened not in await _open_sessions(database, alice.id)
    with pytest.raises(InvalidRefreshToken):  # and the thief's rotation is dead too
        await sessions.refresh(accounts, refresh_token=second.refresh_token)


async def test_enrolling_a_user_deleted_meanwhile_is_user_not_found(
    accounts: Accounts, database: Database
) -> None:
    # The caller as the auth middleware read him, then deleted by himself in parallel:
    # the enrollment's insert would break the foreign key (a 500) without the row lock.
    user = await make_user(database, "alice")
    await users.delete_me(accounts, me=user)
    with pytest.raises(UserNotFound):
        await totp.enroll(accounts, me=user, session=session_id(user.id), password=PASSWORD)
    async with database.read() as conn:
        assert await conn.fetch_all("SELECT * FROM totp_secrets") == []
