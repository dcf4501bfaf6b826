"""Property-based fuzzing of the whole API from its own document, against `python run.py`.

schemathesis reads `/openapi.json` from a real server process and, for every operation,
sends the document's examples, its coverage cases (boundaries, missing and wrong-typed
values) and generated requests, valid and invalid, as a regular user and as a
superuser; every response goes through every check schemathesis has (no 5xx, status
codes, content types, headers and bodies as documented, valid data accepted, invalid
data refused, auth enforced, methods not in the document refused, ...). A stateful run
then chains calls (create, read, change, delete) to catch use-after-free and the like.

CI runs a bounded, derandomized number of examples; `make fuzz` raises FUZZ_EXAMPLES and
picks a random seed (FUZZ_SEED replays one).

The fuzzer may delete, demote, log out or re-password the very accounts it runs as; so
before every case each identity checks its token with GET /users/me and, when that fails,
repairs its account straight in the database and opens a new session (no login, so no
argon2 cost and no login throttle in the way).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.stateful
import pytest
import requests
import schemathesis

from service import keys, tokens
from service.app import create_app
from service.db import migrations, open_database
from service.queries import sessions as session_queries
from service.queries import users as user_queries
from service.queries.users import UsernameTaken
from service.settings import Settings
from tests.helpers_auth import password_hash
from tests.helpers_process import SECRET_KEY, Server, database_of, started, wait_until_serving
from tests.log_hygiene import remember_token

pytestmark = pytest.mark.process

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
SEED = int(os.environ["FUZZ_SEED"]) if os.environ.get("FUZZ_SEED") else None
STATEFUL_STEPS = int(os.environ.get("FUZZ_STATEFUL_STEPS", "6"))
ROLES = ("user", "superuser")

# Where the contract (docs/API.md) and schemathesis' expectations differ, the contract
# wins; each exception is narrow (the operations named), says why, and is in the README.
_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]  # schemathesis' defaults
_OPERATION_CONFIG: list[dict[str, Any]] = [
    # A schema-valid request that the contract refuses for what no schema can say: 400 for
    # a wrong `current_password`, for an inactive user logging in or refreshing, or for a
    # reset or verification token that was never issued.
    {
        "include-name": [
            "PATCH /users/me/password",
            "POST /login/access-token",
            "POST /login/refresh",
            # A random token names no reset or verification (400 `Invalid or expired token`).
            "POST /reset-password",
            "POST /verify-email",
        ],
        "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "400"]}},
    },
    # ... and, changing one's own `password` through PATCH /users/{user}, 422 without
    # `current_password` (required only when the id is the caller's own).
    {
        "include-name": "PATCH /users/{user}",
        "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "400", "422"]}},
    },
    # ... and 412 for an `If-Match` that is not the product's current ETag.
    {
        "include-name": [
            "PUT /products/{product_id}",
            "PATCH /products/{product_id}",
            "DELETE /products/{product_id}",
        ],
        "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "412"]}},
    },
]
# No other exception: `/users/me` and `/users/signup` are paths of their own that also
# match `/users/{user}`; a fixed path answers 405 with its own methods (service/paths.py).


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED if SEED is not None else 20261127,
            "generation": {"max-examples": EXAMPLES, "deterministic": SEED is None},
            "checks": {"enabled": True},
            "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
            "operations": _OPERATION_CONFIG,
        }
    )


class Identity:
    """A user the fuzzer runs as, kept logged in whatever the fuzzer did to him."""

    def __init__(self, server: Server, database: Path | str, *, superuser: bool) -> None:
        self.server = server
        self.database = database
        self.superuser = superuser
        self.http = requests.Session()
        self.user_id: int | None = None
        self.token: str | None = None
        self.repairs = 0

    def headers(self) -> dict[str, str]:
        """The Authorization header of a token that works now for this identity."""
        if self.token is None or not self._token_works():
            self.token = asyncio.run(self._repair())
            self.repairs += 1
        return {"Authorization": f"Bearer {self.token}"}

    def _token_works(self) -> bool:
        response = self.http.get(
            f"{self.server.base}/users/me",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        if response.status_code != 200:
            return False
        me = response.json()
        return bool(me["is_active"]) and me["is_superuser"] is self.superuser

    async def _repair(self) -> str:
        """Recreate, reactivate or re-flag the account; open a session; sign a token."""
        if isinstance(self.database, str):
            target = Settings(postgres_url=self.database, secret_key=SECRET_KEY)
        else:
            target = Settings(database_path=self.database)
        database = await open_database(target, pool_size=1)
        try:
            async with database.transaction() as conn:
                user = None
                if self.user_id is not None:
                    user = await user_queries.get_by_id(conn, user_id=self.user_id)
                if user is None:
                    user = await self._create(conn)
                else:
                    user = await user_queries.update_user(
                        conn,
                        current=user,
                        changes={"is_active": True, "is_superuser": self.superuser},
                    )
                self.user_id = user.id
                session_id = tokens.new_session_id()
                await session_queries.create_session(
                    conn,
                    session_id=session_id,
                    user_id=user.id,
                    refresh_token_hash=tokens.token_digest(tokens.new_refresh_token()),
                    expires_at=time.time() + 3600,
                    user_agent="fuzz",
                    client="127.0.0.1",
                )
        finally:
            await database.close()
        issued = tokens.issue(
            user_id=user.id,
            token_version=user.token_version,
            session_id=session_id,
            key=SECRET_KEY,
            lifetime_seconds=3600,
        )
        return remember_token(issued.token)

    async def _create(self, conn: Any) -> user_queries.User:
        role = "admin" if self.superuser else "user"
        while True:
            try:
                return await user_queries.create_user(
                    conn,
                    username=f"fuzz-{role}-{secrets.token_hex(4)}",
                    hashed_password=password_hash(),
                    is_superuser=self.superuser,
                )
            except UsernameTaken:  # pragma: no cover - 32 random bits
                continue


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("fuzz")
    migrations.apply_pending(database_of(directory, keep=True))
    with started(directory, "--no-migrate") as server:
        wait_until_serving(server)
        yield server


@pytest.fixture(scope="module")
def identities(fuzz_server: Server) -> dict[str, Identity]:
    return {
        role: Identity(fuzz_server, fuzz_server.database, superuser=role == "superuser")
        for role in ROLES
    }


def _document() -> dict[str, Any]:
    """The document as run.py's app builds it (nothing is opened to build it)."""
    app = create_app(Settings(secret_key=SECRET_KEY))
    document: dict[str, Any] = json.loads(json.dumps(app[keys.OPENAPI_DOCUMENT]))
    return document


# Built at import time, for one test per operation (schemathesis' lazy `from_fixture`
# fails under pytest 9); test_the_fuzzed_document_is_the_served_one pins it to the
# server's /openapi.json.
DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=_config())


def test_the_fuzzed_document_is_the_served_one(fuzz_server: Server) -> None:
    response = requests.get(f"{fuzz_server.base}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.json() == DOCUMENT


def _excluded(response: requests.Response) -> list[Any]:
    # A 204 or 304 has no body, hence no Content-Type, and the document promises none.
    if response.status_code in (204, 304):
        assert response.content == b"", response.content
        assert "Content-Type" not in response.headers, response.headers
    return []


def _call_and_validate(case: schemathesis.Case, identity: Identity, server: Server) -> None:
    headers = identity.headers()
    response = case.call(base_url=server.base, headers=headers, timeout=30)
    case.validate_response(
        response,
        headers=headers,
        excluded_checks=_excluded(response),
        transport_kwargs={"headers": headers, "base_url": server.base},
    )


# Two tests rather than one parametrized by role: schemathesis' parametrize() does not
# combine with pytest's.
@schema.parametrize()
def test_every_operation_as_a_regular_user(
    case: schemathesis.Case, identities: dict[str, Identity], fuzz_server: Server
) -> None:
    _call_and_validate(case, identities["user"], fuzz_server)


@schema.parametrize()
def test_every_operation_as_a_superuser(
    case: schemathesis.Case, identities: dict[str, Identity], fuzz_server: Server
) -> None:
    _call_and_validate(case, identities["superuser"], fuzz_server)


def test_chained_calls_as_a_superuser(identities: dict[str, Identity], fuzz_server: Server) -> None:
    """Stateful: create, read, change and delete through links schemathesis infers."""
    identity = identities["superuser"]

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": fuzz_server.base, "headers": identity.headers(), "timeout": 30}

        def validate_response(
            self,
            response: Any,
            case: schemathesis.Case,
            additional_checks: Any = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=_excluded(response),
                transport_kwargs=kwargs or None,
                recorder=getattr(self, "recorder", None),  # for use_after_free and co.
            )

    hypothesis.stateful.run_state_machine_as_test(
        Workflow,
        settings=hypothesis.settings(
            max_examples=EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=SEED is None,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            database=None,
        ),
    )
