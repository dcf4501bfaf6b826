"""Every command in README.md runs and does what the README says, so none of them rots.

The README's fenced blocks are read in order. A ```sh block is split into commands, and
each command must match exactly one entry of CHECKS (a test below runs it, against a real
server where it needs one) or of NOT_RUN_HERE (with the reason and what runs it instead);
anything else fails test_every_block_has_a_check. A ```python block is run as a script
against a real server. Other blocks are checked as the `<!-- readme-test: KIND (reason) -->`
comment above them says (MARKERS); one without such a comment fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.db import migrations
from service.db.dialect import Dialect
from service.settings import Settings, SettingsError
from tests import engines
from tests.helpers_process import (
    REPO_ROOT,
    SECRET_KEY,
    Server,
    call,
    environment,
    free_port,
    started,
    wait_until_ready,
    wait_until_serving,
)

pytestmark = [
    pytest.mark.process,
    pytest.mark.sqlite_only("the README's commands run on the default engine, SQLite"),
]

README = REPO_ROOT / "README.md"
README_ADDRESSES = ("localhost:8000", "127.0.0.1:8000")
COMMAND_TIMEOUT = 30.0

# Every command in a ```sh block matches exactly one of these; the test named runs it.
CHECKS = {
    # A curl (its output kept in a variable or not), or a field taken from a kept answer.
    "test_api_commands": r"^([A-Z_]+=\$\()?curl |^[A-Z_]+=\$\(echo \"\$[A-Z_]+\" \| python3 -c ",
    "test_python_client_example": r"^\.venv/bin/pip install httpx==",
    "test_make_run_serves_the_docs": r"^make run$",
    "test_yoyo_commands": r"^\.venv/bin/yoyo (?!.*postgresql://)",
    "test_no_migrate_refuses_a_pending_migration": r"^\.venv/bin/python run\.py --no-migrate$",
    "test_make_migrate_commands": r"(^|\s)make migrate$",
    "test_create_superuser_commands": r"run\.py create-superuser|-m service\.create_superuser",
    "test_backup_while_serving": (
        r"sqlite3\.connect\('products\.db'\)\.backup\(|^cp -p products\.db\.secret_key "
    ),
    "test_gunicorn_with_two_workers": r"^\.venv/bin/gunicorn ",
    "test_run_py_with_two_workers": r"^\.venv/bin/python run\.py --workers ",
    "test_one_test_file": r"^\.venv/bin/python -m pytest tests/",
    "test_moving_to_postgresql": (
        r"^\.venv/bin/yoyo apply .*postgresql://|run\.py copy-to-postgres "
        r"|^DATABASE_URL=postgresql://\S+ SECRET_KEY="
    ),
}

# Commands not run by this file, each with the reason and what runs it instead.
NOT_RUN_HERE = {
    "make test": ".ci/run runs it (REQUIRE_BROWSER_TESTS=1 make test); here it would run "
    "this file again",
    "make lint": ".ci/run runs it before the tests",
    "make test-postgresql": ".ci/run runs it after `make test` (the same suite on "
    "PostgreSQL, where this file is left out)",
    "make fuzz": "minutes long; `make test` runs the same tests/test_fuzz.py with fewer "
    "examples and a fixed seed",
    "make format": "it rewrites the checkout's files; `make lint` in .ci/run checks the same "
    "formatting without writing",
}

# `<!-- readme-test: KIND (reason) -->` right above a block: how a non-command block is checked.
MARKERS = {
    "response": "test_api_commands: a ```json block is the body the command above it prints",
    "output": "test_python_client_example: a ```text block is what the ```python above prints",
    "log-line": "test_log_line_example",
    "layout": "test_layout_lists_every_module",
    "copy-summary": "test_moving_to_postgresql: what the copy-to-postgres command above prints",
    "skip": "not checked; the reason in parentheses is required",
}
_MARKER = re.compile(r"<!--\s*readme-test:\s*([\w-]+)\s*(?:\((.*)\))?\s*-->")


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # of the opening fence, 1-based
    marker: str | None
    marker_reason: str


@dataclass(frozen=True)
class Command:
    text: str  # without its trailing comment; continuation lines joined
    comment: str
    line: int


def readme_blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        fence = re.fullmatch(r"```(\S*)\s*", lines[index])
        if fence is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"README.md:{index + 1}: the block is never closed"
        marker, reason = None, ""
        above = index - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        if above >= 0 and (found := _MARKER.fullmatch(lines[above].strip())):
            marker, reason = found.group(1), (found.group(2) or "").strip()
        text = "\n".join(lines[index + 1 : end])
        blocks.append(Block(fence.group(1), text, index + 1, marker, reason))
        index = end + 1
    return blocks


def commands(block: Block) -> list[Command]:
    """The shell commands of a block: continuation lines joined, comments split off."""
    result: list[Command] = []
    pending = ""
    start = 0
    for offset, raw in enumerate(block.text.splitlines()):
        code, comment = _split_comment(raw)
        if not pending and not code.strip():
            if comment and result:  # a comment-only line goes with the command above
                last = result[-1]
                result[-1] = Command(last.text, f"{last.comment} {comment}".strip(), last.line)
            continue
        if not pending:
            start = block.line + 1 + offset
        if code.rstrip().endswith("\\"):
            pending += code.rstrip()[:-1].strip() + " "
            continue
        result.append(Command((pending + code).strip(), comment, start))
        pending = ""
    assert not pending, f"README.md:{start}: a command ends with a line continuation"
    return result


def _split_comment(line: str) -> tuple[str, str]:
    """Split `code  # comment` at the first `#` outside quotes that starts a word."""
    quote = ""
    for position, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or line[position - 1].isspace()):
            return line[:position], line[position + 1 :].strip()
    return line, ""


def shell_blocks() -> list[Block]:
    return [block for block in readme_blocks() if block.language in ("sh", "bash")]


def readme_commands(check: str) -> list[Command]:
    """The README's commands that CHECKS assigns to `check`; there must be some."""
    pattern = re.compile(CHECKS[check])
    found = [c for block in shell_blocks() for c in commands(block) if pattern.search(c.text)]
    assert found, f"README.md has no command for {check} (pattern {CHECKS[check]!r})"
    return found


def at(command: Command) -> str:
    return f"README.md:{command.line}: {command.text}"


def on_port(text: str, port: int) -> str:
    """The README's address (localhost:8000) replaced by a test server's."""
    assert any(address in text for address in README_ADDRESSES), text
    for address in README_ADDRESSES:
        text = text.replace(address, f"127.0.0.1:{port}")
    return text


def scratch_checkout(tmp_path: Path) -> Path:
    """A folder that looks like the repository root to `.venv/bin/...` and yoyo.ini."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / ".venv").symlink_to(Path(sys.prefix))
    (root / "sql").symlink_to(REPO_ROOT / "sql")
    shutil.copy(REPO_ROOT / "yoyo.ini", root / "yoyo.ini")
    return root


def run_shell(
    command: str, cwd: Path, env: dict[str, str], timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"set -o pipefail\n{command}"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn(tmp_path: Path, command: str, port: int, **env: str) -> Server:
    """A README command that serves until stopped, in its own process group."""
    environ = environment(tmp_path, **env)
    return _spawned(tmp_path, command, port, environ, Path(environ["DATABASE_PATH"]))


def _spawned(
    home: Path, command: str, port: int, environ: dict[str, str], database: Path | str
) -> Server:
    stderr_path = home / f"stderr-{port}.txt"
    with stderr_path.open("wb") as output:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=REPO_ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(process, port, stderr_path, Path(environ["LOG_FILE"]), database)


Stopper = Callable[..., int]


@pytest.fixture
def stop_group() -> Iterator[Stopper]:
    """Stop a spawned command's process group (SIGKILL on the way out if it lingers)."""
    spawned: list[Server] = []

    def stop(server: Server, signal_number: int = signal.SIGTERM) -> int:
        spawned.append(server)
        os.killpg(server.process.pid, signal_number)
        return server.process.wait(timeout=15)

    yield stop
    for server in spawned:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)


def get(server: Server, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"{server.base}{path}")  # noqa: S310
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def log_in(server: Server, username: str, password: str) -> dict[str, str]:
    form = urllib.parse.urlencode({"username": username, "password": password}).encode()
    url = f"{server.base}/login/access-token"
    with urllib.request.urlopen(url, data=form, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())  # type: ignore[no-any-return]


# --- every block has a check ---------------------------------------------------------


def test_every_block_has_a_check() -> None:
    problems = []
    for block in readme_blocks():
        where = f"README.md:{block.line}"
        if block.marker is not None and block.marker not in MARKERS:
            problems.append(f"{where}: unknown readme-test marker {block.marker!r}")
        elif block.marker is not None and not block.marker_reason:
            problems.append(f"{where}: the readme-test marker needs a (reason)")
        elif block.marker == "skip":
            continue
        elif block.language in ("sh", "bash"):
            for command in commands(block):
                claims = [
                    name for name, pattern in CHECKS.items() if re.search(pattern, command.text)
                ]
                claims += ["NOT_RUN_HERE"] if command.text in NOT_RUN_HERE else []
                if len(claims) != 1:
                    problems.append(f"{at(command)}\n    is claimed by {claims or 'no check'}")
        elif block.language == "python":
            if block.marker is not None:
                problems.append(f"{where}: a python block is run, not marked")
        elif block.marker is None:
            problems.append(
                f"{where}: no check knows this ```{block.language} block: make it a command, "
                "or put a readme-test marker above it"
            )
    assert not problems, "\n".join(problems)
    # The allow-list names only commands that are in the README.
    all_commands = {c.text for block in shell_blocks() for c in commands(block)}
    assert set(NOT_RUN_HERE) <= all_commands, set(NOT_RUN_HERE) - all_commands


def test_no_command_hides_in_prose() -> None:
    """Commands in running text are not run by this file: they belong in ```sh blocks."""
    text = re.sub(r"```.*?```", "", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    spans = re.findall(r"`([^`\n]+)`", text)
    looks_run = re.compile(r"^((curl|sqlite3|pip|gunicorn) |python3? -c |\.venv/bin/)")
    assert [span for span in spans if looks_run.match(span)] == []


# --- the API, with curl ----------------------------------------------------------------

# Each command's curl also writes the response headers to a file, for the status check.
CURL_PRELUDE = (
    'curl() { command curl --silent --show-error --dump-header "$README_HEADERS" "$@"; }\n'
)
_STATUS_CLAIM = re.compile(r"^(\d{3})\b(.*)$")
_HEADER_CLAIM = re.compile(r"^([A-Za-z][A-Za-z-]*)(?::\s*(.+))?$")
_PLACEHOLDER = re.compile(r"<[a-z][^<>]*>")
_ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=\$\(")
ALICE = ("alice", "correct horse battery")  # the README's example account


def test_api_commands(tmp_path: Path) -> None:
    """Each curl command, in README order in one shell session, gets the status it claims."""
    if shutil.which("curl") is None:
        if os.environ.get("CI"):
            pytest.fail("curl is not installed (apt-get install -y curl)")
        pytest.skip("curl is not installed (apt-get install -y curl); CI runs this")
    pattern = re.compile(CHECKS["test_api_commands"])
    with started(tmp_path) as server:
        wait_until_serving(server)
        variables: dict[str, str] = {}
        last_output: str | None = None
        ran = 0
        for block in readme_blocks():
            if block.marker == "response":
                assert last_output is not None, f"README.md:{block.line}: no command above"
                assert json.loads(last_output) == json.loads(block.text), (block.line, last_output)
                continue
            if block.language not in ("sh", "bash") or block.marker == "skip":
                last_output = None
                continue
            for command in commands(block):
                if not pattern.search(command.text):
                    last_output = None
                    continue
                last_output = _run_curl(tmp_path, server, command, variables)
                ran += 1
    assert ran == len(readme_commands("test_api_commands"))


def _run_curl(
    tmp_path: Path,
    server: Server,
    command: Command,
    variables: dict[str, str],
) -> str:
    curls = len(re.findall(r"\bcurl\b", command.text))
    assert curls <= 1, f"{at(command)}\n    one curl per command"
    text = on_port(command.text, server.port) if curls else command.text
    # The server writes its mail into the test's folder (MAIL_URL), not the checkout's ./mail.
    text = text.replace(" mail/*.eml", f" {tmp_path / 'mail'}/*.eml")
    # A reader pastes these in order: a value comes from an earlier answer (as OTHER does),
    # never from a `<...>` to fill in by hand.
    assert not _PLACEHOLDER.findall(text), f"{at(command)}\n    fill it from an answer"
    headers_file = tmp_path / "headers.txt"
    headers_file.unlink(missing_ok=True)
    assigned = _ASSIGNMENT.match(text)
    value_file = tmp_path / "value.txt"
    script = CURL_PRELUDE + text
    if assigned:
        script += f'\nprintf %s "${assigned.group(1)}" > "$README_VALUE"'
    env = environment(
        tmp_path, **variables, README_HEADERS=str(headers_file), README_VALUE=str(value_file)
    )
    result = run_shell(script, REPO_ROOT, env)
    assert result.returncode == 0, f"{at(command)}\n{result.stderr}"
    if curls:
        _check_response(command, headers_file, result)
    if assigned:
        value = value_file.read_text(encoding="utf-8")
        assert value, f"{at(command)}\n    left {assigned.group(1)} empty"
        variables[assigned.group(1)] = value
    return result.stdout


def _check_response(
    command: Command, headers_file: Path, result: subprocess.CompletedProcess[str]
) -> None:
    """The status (and headers) the command's comment claims, else a 2xx."""
    assert headers_file.exists(), f"{at(command)}\n    curl never ran"
    status, headers = _last_response_headers(headers_file.read_text(encoding="latin-1"))
    expected = _STATUS_CLAIM.match(command.comment)
    if expected:
        assert status == int(expected.group(1)), f"{at(command)}\n    got {status}: {result.stdout}"
        _check_header_claims(command, expected.group(2), headers)
    else:
        assert 200 <= status < 300, f"{at(command)}\n    got {status}: {result.stdout}"


def _last_response_headers(dump: str) -> tuple[int, dict[str, str]]:
    responses = re.split(r"\r?\n\r?\n", dump.strip())
    status_line, *lines = responses[-1].splitlines()
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


def _check_header_claims(command: Command, rest: str, headers: dict[str, str]) -> None:
    """`# 201, Location: /products/1, ETag`: a header with that value, a header present."""
    if not rest.startswith(","):
        return  # `# 204: this session ends now` is prose
    for claim in (part.strip() for part in rest[1:].split(",")):
        found = _HEADER_CLAIM.fullmatch(claim)
        assert found, f"{at(command)}\n    cannot check {claim!r}: say `Header` or `Header: value`"
        name, value = found.group(1).lower(), found.group(2)
        assert name in headers, f"{at(command)}\n    no {found.group(1)} header: {headers}"
        if value is not None:
            assert headers[name] == value, f"{at(command)}\n    {name}: {headers[name]}"


# --- the Python client -----------------------------------------------------------------


def test_python_client_example(tmp_path: Path) -> None:
    """The httpx example prints what the README says, logging in again after its 401."""
    for command in readme_commands("test_python_client_example"):  # installing httpx
        result = run_shell(command.text, REPO_ROOT, environment(tmp_path))
        assert result.returncode == 0, f"{at(command)}\n{result.stderr}"
    blocks = readme_blocks()
    python = [i for i, block in enumerate(blocks) if block.language == "python"]
    assert python, "README.md has no python example"
    with started(tmp_path) as server:
        wait_until_serving(server)
        for index in python:
            script = tmp_path / f"example-{blocks[index].line}.py"
            script.write_text(on_port(blocks[index].text, server.port), encoding="utf-8")
            result = subprocess.run(
                [sys.executable, str(script)],
                env=environment(tmp_path),
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
            )
            where = f"README.md:{blocks[index].line}"
            assert result.returncode == 0, f"{where}\n{result.stderr}"
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            assert following is not None and following.marker == "output", (
                f"{where}: say what the example prints in a ```text block marked `output`"
            )
            assert result.stdout == following.text + "\n", where
    log = server.log_file.read_text(encoding="utf-8")

    # The 401 path ran: a refused GET /users/me, then a second login.
    def requests(line: str, status: int) -> int:
        return len(re.findall(rf"{line} выполнялся \S+ мс \| status={status} ", log))

    assert requests("GET /users/me", 401) == 1, log
    assert requests("POST /login/access-token", 200) == 2, log
    assert requests("POST /users/signup", 422) == 1, log


# --- operating it ----------------------------------------------------------------------


def test_make_run_serves_the_docs(tmp_path: Path, stop_group: Stopper) -> None:
    (command,) = readme_commands("test_make_run_serves_the_docs")
    port = free_port()
    server = spawn(tmp_path, command.text, port, PORT=str(port))
    wait_until_serving(server)
    for page in ("/docs", "/redoc", "/health/ready"):
        status, body = get(server, page)
        assert status == 200, (page, body[:200])
    stop_group(server, signal.SIGINT)  # Ctrl+C in the terminal; make reports it as an error
    assert "Traceback" not in server.stderr()
    with pytest.raises(urllib.error.URLError):  # no server left behind
        get(server, "/health")
    database = tmp_path / "data" / "app.db"
    assert migrations.pending_sync(database, migrations.known_migration_ids()) == []


def test_yoyo_commands(tmp_path: Path) -> None:
    """In a checkout: apply migrates ./products.db (or --database), rollback undoes the newest."""
    root = scratch_checkout(tmp_path)
    known = migrations.known_migration_ids()
    absolute = tmp_path / "srv"
    (absolute / "data").mkdir(parents=True)
    for command in readme_commands("test_yoyo_commands"):
        text = command.text.replace("////srv/", f"///{absolute}/")
        result = run_shell(text, root, environment(tmp_path))
        assert result.returncode == 0, f"{at(command)}\n{result.stderr}"
        if "--database" in text:
            path = text.split("sqlite:///", 1)[1].split()[0]
            database = Path(path) if path.startswith("/") else root / path
            assert database.exists(), f"{at(command)}\n    did not create {database}"
            assert migrations.pending_sync(database, known) == [], at(command)
        elif text.split()[1] == "apply":
            assert migrations.pending_sync(root / "products.db", known) == [], at(command)
        elif text.split()[1] == "rollback":
            assert migrations.pending_sync(root / "products.db", known) == [max(known)], at(command)
        else:
            pytest.fail(f"{at(command)}\n    no expectation for this yoyo command")


def test_no_migrate_refuses_a_pending_migration(tmp_path: Path) -> None:
    (command,) = readme_commands("test_no_migrate_refuses_a_pending_migration")
    text = f"{command.text} --port {free_port()}"
    result = run_shell(text, REPO_ROOT, environment(tmp_path))
    assert result.returncode != 0
    assert "pending migrations" in result.stderr, result.stderr
    assert not (tmp_path / "data" / "app.db").exists()


MAKE_TIMEOUT = 180.0  # make first checks the runtime requirements with pip


def test_make_migrate_commands(tmp_path: Path) -> None:
    """The database the settings name (./products.db unset), its folder made, applied ids said."""
    root = scratch_checkout(tmp_path)
    for name in ("Makefile", "run.py", "service", *REQUIREMENTS):
        (root / name).symlink_to(REPO_ROOT / name)
    absolute = tmp_path / "srv"
    known = migrations.known_migration_ids()
    env = environment(tmp_path)
    del env["DATABASE_PATH"]  # make migrate alone: the default database
    for command in readme_commands("test_make_migrate_commands"):
        text = command.text.replace("=/srv/", f"={absolute}/")
        result = run_shell(text, root, env, timeout=MAKE_TIMEOUT)
        assert result.returncode == 0, f"{at(command)}\n{result.stdout}\n{result.stderr}"
        assigned = re.match(r"DATABASE_PATH=(\S+) ", text)
        database = Path(assigned.group(1)) if assigned else root / "products.db"
        said = f"sqlite:///{database if assigned else 'products.db'}: applied {len(known)} "
        assert said in result.stdout, f"{at(command)}\n{result.stdout}"
        # The comment quotes the output, "first, ..., last": it names the newest migration.
        if quoted := re.search(r'"([^"]+)"', command.comment):
            head, dots, tail = quoted.group(1).partition(", ..., ")
            lines = [line for line in result.stdout.splitlines() if line.startswith(head)]
            assert lines, f"{at(command)}\n    the comment quotes {head!r}:\n{result.stdout}"
            assert lines[0].endswith(tail if dots else head), f"{at(command)}\n{lines[0]}"
        assert migrations.pending_sync(database, known) == [], at(command)
    assert (absolute / "data").stat().st_mode & 0o777 == 0o700  # "creates /srv/data"


REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements-assets.txt")


def test_create_superuser_commands(tmp_path: Path) -> None:
    """Each command makes a superuser who can log in with the password it printed."""
    listed = readme_commands("test_create_superuser_commands")
    homes = [tmp_path / f"superuser-{number}" for number in range(len(listed))]
    with ThreadPoolExecutor() as pool:  # each on its own database, side by side
        results = list(
            pool.map(lambda c, h: run_shell(c.text, REPO_ROOT, environment(h)), listed, homes)
        )
    for command, home, result in zip(listed, homes, results, strict=True):
        assert result.returncode == 0, f"{at(command)}\n{result.stderr}"
        created = re.fullmatch(r"created superuser '(\S+)' with password: (.+)\n", result.stdout)
        assert created, f"{at(command)}\n{result.stdout}"
        username, password = created.groups()
        words = shlex.split(command.text)
        if "--username" in words:
            assert username == words[words.index("--username") + 1]
        if "--password" in words:
            assert password == words[words.index("--password") + 1]
        if words[0].startswith("ADMIN_PASSWORD="):
            assert password == words[0].partition("=")[2]
        assert password not in result.stderr
        assert asyncio.run(_superuser_logs_in(home, username, password)), at(command)

    # "Run again, it says the user exists and changes nothing (exit 0)".
    again = run_shell(listed[0].text, REPO_ROOT, environment(homes[0]))
    assert again.returncode == 0, again.stderr
    assert "already exists" in again.stdout
    first = re.fullmatch(r"created superuser '(\S+)' with password: (.+)\n", results[0].stdout)
    assert first is not None
    assert asyncio.run(_superuser_logs_in(homes[0], *first.groups()))


async def _superuser_logs_in(home: Path, username: str, password: str) -> bool:
    settings = Settings(
        database_path=Path(environment(home)["DATABASE_PATH"]),
        log_file=home / "check.log",
        log_stderr=False,
        secret_key=SECRET_KEY,
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        login = await client.post(
            "/login/access-token", data={"username": username, "password": password}
        )
        if login.status != 200:
            return False
        token = (await login.json())["access_token"]
        me = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        return me.status == 200 and (await me.json())["is_superuser"] is True


def test_backup_while_serving(tmp_path: Path) -> None:
    """The backup, taken while the server runs, holds a commit still only in the WAL; served
    with the key file copied beside it, the tokens issued before still work."""
    backup, copy_key = readme_commands("test_backup_while_serving")
    root = scratch_checkout(tmp_path)
    generated_key = {"SECRET_KEY": ""}  # unset: the key file, as a default install has it
    with started(tmp_path, DATABASE_PATH=str(root / "products.db"), **generated_key) as server:
        wait_until_serving(server)
        status, _, body = call(server, "POST", "/products/", {"name": "Backed up", "price": 1})
        assert status == 201, body
        assert call(server, "POST", "/users/signup", ALICE_BODY)[0] == 201
        token = log_in(server, *ALICE)["access_token"]
        assert (root / "products.db-wal").stat().st_size > 0  # a plain copy would miss it
        for command in (backup, copy_key):
            # A usual umask, which would leave a plain copy readable by every local user.
            result = run_shell(f"umask 022\n{command.text}", root, environment(tmp_path))
            assert result.returncode == 0, f"{at(command)}\n{result.stderr}"
        assert get(server, "/health/ready")[0] == 200  # the server went on serving
    backup_file = sqlite3.connect(root / "backup.db")
    try:
        assert backup_file.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        names = [row[0] for row in backup_file.execute("SELECT name FROM products")]
    finally:
        backup_file.close()
    assert names == ["Backed up"]
    assert migrations.pending_sync(root / "backup.db", migrations.known_migration_ids()) == []
    assert (root / "backup.db.secret_key").stat().st_mode & 0o777 == 0o600
    assert (root / "backup.db").stat().st_mode & 0o777 == 0o600  # password hashes, sessions
    # "serve it with DATABASE_PATH=backup.db": the token issued before the backup works.
    restored = tmp_path / "restored"
    restored.mkdir()
    with started(restored, DATABASE_PATH=str(root / "backup.db"), **generated_key) as server:
        wait_until_serving(server)
        assert get(server, "/users/me", token)[0] == 200, server.stderr()


def test_gunicorn_with_two_workers(tmp_path: Path, stop_group: Stopper) -> None:
    """Two workers on one SQLite file: signups and logins work whichever worker answers."""
    (serve,) = readme_commands("test_gunicorn_with_two_workers")
    assert "--worker-class service.worker.Worker" in serve.text, at(serve)
    migrations.apply_pending(tmp_path / "data" / "app.db")  # "run `yoyo apply` first"
    port = free_port()
    server = spawn(tmp_path, on_port(serve.text, port), port)
    wait_until_serving(server)
    assert len(_gunicorn_processes(server.process.pid)) == 3, server.stderr()  # master + 2
    for number in range(3):  # a new connection each: the workers share them out
        user = {"username": f"worker-user-{number}", "password": "a long password"}
        status, _, body = call(server, "POST", "/users/signup", user)
        assert status == 201, body
        token = log_in(server, user["username"], user["password"])["access_token"]
        assert get(server, "/users/me", token)[0] == 200
    assert stop_group(server) == 0, server.stderr()
    assert "Traceback" not in server.stderr()


def test_run_py_with_two_workers(tmp_path: Path, stop_group: Stopper) -> None:
    """The README's `run.py --workers 2`: migrated by the parent, both workers log requests."""
    (command,) = readme_commands("test_run_py_with_two_workers")
    port = free_port()
    server = spawn(tmp_path, f"{command.text} --port {port}", port)
    wait_until_serving(server)
    logs = [server.log_file.with_name(f"app.{number}.log") for number in (1, 2)]
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while not all(log.exists() and "Running on" in log.read_text("utf-8") for log in logs):
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.05)
    for _ in range(20):  # a new connection each: the kernel shares them out
        assert get(server, "/health/ready")[0] == 200
    assert stop_group(server) == 0, server.stderr()
    assert all(" выполнялся " in log.read_text("utf-8") for log in logs), server.stderr()
    assert "Traceback" not in server.stderr()


README_POSTGRES_URL = "postgresql://products@db.internal/products"
_NODE_ADDRESS = re.compile(r"--host \S+ --port 8000\b")


@pytest.mark.needs_postgresql
def test_moving_to_postgresql(tmp_path: Path, stop_group: Stopper) -> None:
    """The section's steps in order, on a database of the test server: yoyo migrates it, the
    copy carries what a stopped SQLite service wrote, and two nodes serve it as one."""
    migrate, copy, *nodes = readme_commands("test_moving_to_postgresql")
    assert "yoyo apply" in migrate.text and "copy-to-postgres" in copy.text, at(migrate)
    assert len(nodes) == 2, [at(node) for node in nodes]
    with engines.own_database() as url:
        _migrate_by_hand(tmp_path, migrate, url)
        summary = _copy_what_sqlite_served(tmp_path, copy, url)
        (block,) = marked("copy-summary")
        assert [_shape(line) for line in summary] == block.text.splitlines(), at(copy)
        servers: list[Server] = []
        try:
            servers += [_start_node(tmp_path, node, url) for node in nodes]
            for server in servers:
                wait_until_ready(server)
            _nodes_serve_as_one(*servers)
            for server in servers:
                assert stop_group(server) == 0, server.stderr()
                assert "Traceback" not in server.stderr()
        finally:  # before the database is dropped, whatever failed
            for server in servers:
                if server.process.poll() is None:
                    os.killpg(server.process.pid, signal.SIGKILL)
                    server.process.wait(timeout=10)


def _migrate_by_hand(tmp_path: Path, command: Command, url: str) -> None:
    """In a checkout whose yoyo.ini names sql/sqlite: the PostgreSQL directory is applied."""
    root = scratch_checkout(tmp_path)
    text = command.text.replace(README_POSTGRES_URL, url)
    assert text != command.text, at(command)
    result = run_shell(text, root, environment(tmp_path))
    assert result.returncode == 0, f"{at(command)}\n{result.stderr}"
    known = migrations.known_migration_ids(Dialect.POSTGRESQL)
    assert migrations.pending_sync(url, known) == [], at(command)
    assert not (root / "products.db").exists(), at(command)  # yoyo.ini's database untouched


def _copy_what_sqlite_served(tmp_path: Path, command: Command, url: str) -> list[str]:
    """Alice and two products (the newer deleted) through run.py on SQLite, stopped, copied."""
    with started(tmp_path) as server:
        wait_until_serving(server)
        assert call(server, "POST", "/users/signup", ALICE_BODY)[0] == 201
        for name in ("Tea", "Cake"):
            assert call(server, "POST", "/products/", {"name": name, "price": 2})[0] == 201
        assert call(server, "DELETE", "/products/2")[0] == 204
        server.process.send_signal(signal.SIGTERM)  # step 1: stop the SQLite service
        assert server.process.wait(timeout=15) == 0, server.stderr()
    sqlite = Path(environment(tmp_path)["DATABASE_PATH"])
    text = command.text.replace("--from products.db", f"--from {sqlite}")
    text = text.replace(README_POSTGRES_URL, url)
    result = run_shell(text, REPO_ROOT, environment(tmp_path))
    assert result.returncode == 0, f"{at(command)}\n{result.stderr}"
    assert "products: 1 row copied, next id 3" in result.stdout, result.stdout
    return [
        line.replace(str(sqlite), "products.db").replace(url, README_POSTGRES_URL)
        for line in result.stdout.splitlines()
    ]


def _shape(line: str) -> str:
    """A summary line with the README example's counts, which are made up."""
    example = {"users": (41, 45), "products": (230, 262), "login_failures": (3, None)}
    example |= {"login_account_failures": (2, None)}
    example |= {"sessions": (57, None), "spent_refresh_tokens": (38, None)}
    example |= {"account_tokens": (2, None), "outbox": (9, 10)}
    example |= {"totp_secrets": (4, None), "totp_recovery_codes": (30, None)}
    example |= {"mfa_challenges": (0, None)}
    table = line.partition(":")[0]
    if table not in example:
        return line
    rows, next_id = example[table]
    line = re.sub(r": \d+ rows? copied", f": {rows} rows copied", line)
    return re.sub(r"next id \d+", f"next id {next_id}", line)


def _start_node(tmp_path: Path, command: Command, url: str) -> Server:
    """The README's node command on a free local port, in its own process group."""
    port = free_port()
    text = command.text.replace(README_POSTGRES_URL, url)
    text = text.replace("<the shared key>", SECRET_KEY)
    text = _NODE_ADDRESS.sub(f"--host 127.0.0.1 --port {port}", text)
    assert README_POSTGRES_URL not in text and "<" not in text, at(command)
    home = tmp_path / f"node-{port}"
    env = environment(home)
    for name in ("DATABASE_PATH", "DATABASE_URL", "SECRET_KEY"):  # the command sets them
        env.pop(name, None)
    home.mkdir()
    return _spawned(home, text, port, env, url)


def _nodes_serve_as_one(first: Server, second: Server) -> None:
    """A login on one node works on the other; a write on one reads on the other."""
    tokens = log_in(second, ALICE_BODY["username"], ALICE_BODY["password"])  # a copied password
    assert get(first, "/users/me", tokens["access_token"])[0] == 200
    status, _, body = call(first, "POST", "/products/", {"name": "Scone", "price": 3})
    assert status == 201, body
    assert json.loads(body)["id"] == 3  # after the deleted product's id, not max(id) + 1
    assert json.loads(get(second, "/products/3")[1])["name"] == "Scone"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert call(second, "POST", "/logout", headers=bearer)[0] == 204
    assert get(first, "/users/me", tokens["access_token"])[0] == 401  # ended everywhere


ALICE_BODY = {"username": ALICE[0], "password": ALICE[1]}


def _gunicorn_processes(root: int) -> list[int]:
    """`root` and its descendants whose command line runs gunicorn."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    family, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in family}
        grew = not children <= family
        family |= children
    found = []
    for pid in family:
        try:
            cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"gunicorn" in cmdline and not cmdline.startswith(b"bash"):
            found.append(pid)
    return found


# --- developing ------------------------------------------------------------------------


def test_one_test_file() -> None:
    (command,) = readme_commands("test_one_test_file")
    assert "test_readme" not in command.text  # it would run this file again
    result = run_shell(command.text, REPO_ROOT, dict(os.environ))
    assert result.returncode == 0, f"{at(command)}\n{result.stdout}"
    assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout


def marked(kind: str) -> list[Block]:
    found = [block for block in readme_blocks() if block.marker == kind]
    assert found, f"README.md has no block marked {kind!r}"
    return found


LOG_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| INFO +\| [A-Z]+ /\S* выполнялся \d+\.\d\d мс"
    r" \| status=\d{3} request_id=\S+ client=\S+"
)


def test_log_line_example(tmp_path: Path) -> None:
    """The README's example has the shape of the line the service writes for a request."""
    (block,) = marked("log-line")
    assert LOG_LINE.fullmatch(block.text.strip()), block.text
    with started(tmp_path) as server:
        wait_until_serving(server)
        assert call(server, "POST", "/products/", {"name": "Tea", "price": 4.5})[0] == 201
    lines = server.log_file.read_text(encoding="utf-8").splitlines()
    post = [line for line in lines if "POST /products/ " in line]
    assert len(post) == 1 and LOG_LINE.fullmatch(post[0]), lines
    assert post[0].endswith("request_id=proc-post client=127.0.0.1")


_ALLOWED = re.compile(r"; allowed: ([^|;]+?) \|$")
_SIZE_UNITS = {"": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3}


def settings_rows() -> dict[str, str]:
    """The settings table: each variable's row."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Settings (environment variables)") :]
    section = section[: section.index("\n### ")]
    rows = {}
    for line in section.splitlines():
        if found := re.match(r"^\| `([A-Z_]+)` \|", line):
            rows[found.group(1)] = line
    return rows


def test_every_numeric_setting_states_the_range_the_service_allows() -> None:
    """A row says `allowed: 1-65535` (bounds in) or `allowed: above 0, below 86400`, and the
    service takes exactly that: the bounds as said, and nothing beyond them."""
    rows = settings_rows()
    numeric = [name for name in rows if _is_numeric(name)]
    assert {"PORT", "MAX_BODY_BYTES", "LOG_ROTATION", "REQUEST_TIMEOUT_SECONDS"} <= set(numeric)
    for name in numeric:
        allowed = _ALLOWED.search(rows[name])
        assert allowed, f"README.md: the row of {name} states no `; allowed: ...` range"
        accepted, refused = _edges(allowed.group(1))
        for value in accepted:
            assert _accepts(name, value), f"{name}={value} is refused; README: {allowed.group(1)}"
        for value in refused:
            assert not _accepts(name, value), f"{name}={value} is taken; README: {allowed.group(1)}"


def _is_numeric(name: str) -> bool:
    try:
        Settings.from_env({name: "not-a-number"})
    except SettingsError as error:
        return bool(re.search(r"expected an integer|expected a number|expected a size", str(error)))
    return False


def _accepts(name: str, value: str) -> bool:
    try:
        Settings.from_env({name: value})
    except SettingsError:
        return False
    return True


def _edges(allowed: str) -> tuple[list[str], list[str]]:
    """Values just inside and just outside a stated range."""
    if found := re.fullmatch(r"above (\d+), (below|at most) (\d+)", allowed):
        low, high = float(found.group(1)), float(found.group(3))
        top_in = found.group(2) == "at most"
        inside = [low + 0.01, high if top_in else high - 0.01]
        outside = [low, high + 0.01 if top_in else high]
        return [str(v) for v in inside], [str(v) for v in outside]
    found = re.fullmatch(r"(\d+)(?: ([KMG]B))?-(\d+)(?: ([KMG]B))?", allowed)
    assert found, f"cannot read the range {allowed!r}"
    low = int(found.group(1)) * _SIZE_UNITS[found.group(2) or ""]
    high = int(found.group(3)) * _SIZE_UNITS[found.group(4) or ""]
    return [str(low), str(high)], [str(low - 1), str(high + 1)]


def test_layout_lists_every_module() -> None:
    (block,) = marked("layout")
    listed = [line.split()[0] for line in block.text.splitlines() if line.strip()]
    missing = [path for path in listed if not (REPO_ROOT / path).exists()]
    assert missing == [], f"the README's layout lists paths that do not exist: {missing}"
    actual = [
        str(path.relative_to(REPO_ROOT)) + ("/" if path.is_dir() else "")
        for path in sorted((REPO_ROOT / "service").iterdir())
        if path.name not in ("__init__.py", "__pycache__")
    ]
    unlisted = [path for path in actual if path not in listed]
    assert unlisted == [], f"add these to the README's layout: {unlisted}"
