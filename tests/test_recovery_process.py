"""The outbox across real processes: kill -9 mid-send, and two nodes on one PostgreSQL.

`run.py` runs as a real server; the SMTP server (aiosmtpd) runs inside the test process.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.helpers_process import (
    Server,
    call,
    call_json,
    db_rows,
    login,
    serving,
    started,
    wait_until_ready,
)
from tests.log_hygiene import remember
from tests.mail_server import link_token, smtp_server, wait_for

pytestmark = pytest.mark.process

PASSWORD = remember("process recovery password", "a test user's password")
NEW_PASSWORD = remember("process recovery new password", "a new password")


def sign_up(server: Server, username: str) -> None:
    body = {"username": username, "password": PASSWORD, "email": f"{username}@example.com"}
    call_json(server, "POST", "/users/signup", body)


def ask_for_reset(server: Server, email: str) -> None:
    status, _, raw = call(server, "POST", "/password-recovery", {"email": email})
    assert status == 202, raw


def outbox_states(server: Server) -> list[tuple[str, int]]:
    return [(str(s), int(a)) for s, a in db_rows(server.database, OUTBOX_STATES)]


OUTBOX_STATES = "SELECT status, attempts FROM outbox ORDER BY id"


def test_a_message_survives_kill_9_in_the_middle_of_its_send(tmp_path: Path) -> None:
    """202, the sender is mid-send (the server holds DATA), kill -9: after a restart it goes."""
    with smtp_server() as smtp:
        mail = {"MAIL_URL": smtp.url, "MAIL_POLL_SECONDS": "0.05", "MAIL_RETRY_SECONDS": "0.1"}
        smtp.inbox.held.set()
        with started(tmp_path, **mail, MAIL_TIMEOUT_SECONDS="3") as first:
            wait_until_ready(first)
            sign_up(first, "alice")
            ask_for_reset(first, "alice@example.com")
            wait_for(lambda: smtp.inbox.arrived == 1, "the send to begin")
            os.kill(first.process.pid, signal.SIGKILL)
            first.process.wait(timeout=10)
        smtp.inbox.held.clear()
        assert smtp.messages == []
        # The claim's lease (2 x 3 s + 5 s) has to run out before anyone sends it again.
        with serving(tmp_path, **mail) as second:
            wait_for(lambda: len(smtp.messages) == 1, "the message after the restart", 60)
            token = link_token(smtp.messages[0])
            body = {"token": token, "new_password": NEW_PASSWORD}
            status, _, raw = call(second, "POST", "/reset-password", body)
            assert status == 204, raw
            assert login(second, "alice", NEW_PASSWORD)[0] == 200
            wait_for(lambda: outbox_states(second) == [("sent", 2)], "the row marked sent")


@pytest.mark.postgresql_only
def test_two_nodes_never_send_one_message_twice(tmp_path: Path) -> None:
    with smtp_server() as smtp:
        env = {
            "MAIL_URL": smtp.url,
            "MAIL_POLL_SECONDS": "0.02",
            "LOGIN_MAX_FAILURES": "1000",  # every request comes from 127.0.0.1
        }
        with (
            started(tmp_path, LOG_FILE=str(tmp_path / "logs" / "a.log"), **env) as a,
            started(tmp_path, LOG_FILE=str(tmp_path / "logs" / "b.log"), **env) as b,
        ):
            wait_until_ready(a)
            wait_until_ready(b)
            names = [f"user{n:02d}" for n in range(24)]
            for number, name in enumerate(names):
                sign_up(a if number % 2 else b, name)
            for number, name in enumerate(names):
                ask_for_reset(b if number % 2 else a, f"{name}@example.com")
            wait_for(lambda: len(smtp.messages) >= len(names), "every message")
            wait_for(lambda: {s for s, _ in outbox_states(a)} == {"sent"}, "every row marked sent")
            assert sorted(m["To"] for m in smtp.messages) == [f"{n}@example.com" for n in names]
            assert len({m["Message-ID"] for m in smtp.messages}) == len(names)
            assert {attempts for _, attempts in outbox_states(a)} == {1}
            sent_lines = [
                line
                for server in (a, b)
                for line in server.log().splitlines()
                if " sent" in line and "mail " in line
            ]
            assert len(sent_lines) == len(names), sent_lines
