"""Settings read once from environment variables, validated before anything starts."""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from service.db.dialect import Dialect
from service.db.sqlite import Synchronous
from service.mail.transport import parse_mail_url

T = TypeVar("T")
E = TypeVar("E", bound=enum.StrEnum)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A setting has a value the service cannot start with."""


class ProductWriteAccess(enum.StrEnum):
    """Who may create, change and delete products."""

    PUBLIC = "public"
    USER = "user"
    SUPERUSER = "superuser"


class ForwardedHeader(enum.StrEnum):
    """The header the trusted proxies (FORWARDED_ALLOW_IPS) append the client's address to."""

    X_FORWARDED_FOR = "x-forwarded-for"
    FORWARDED = "forwarded"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EventLoop(enum.StrEnum):
    """The asyncio event loop implementation run.py serves on."""

    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service can be configured with; see the README's settings table."""

    host: str = "127.0.0.1"
    port: int = 8000
    database_path: Path = Path("./products.db")
    # Set: the service runs on this PostgreSQL server instead of the SQLite file.
    postgres_url: str | None = field(default=None, repr=False)  # may hold a password
    database_pool_size: int = 10
    database_synchronous: Synchronous = Synchronous.NORMAL
    database_readers: int = 2
    log_file: Path = Path("logs/app.log")
    log_level: str = "INFO"
    log_json: bool = False
    log_stderr: bool = True
    log_rotation_bytes: int = 10_000_000  # LOG_ROTATION: a log file this large is rotated
    log_retention: int = 10  # LOG_RETENTION: the rotated files of each log file kept
    max_body_bytes: int = 1024 * 1024
    request_timeout_seconds: float = 30.0
    keepalive_timeout_seconds: float = 75.0  # above common proxies' 60 s upstream keep-alive
    first_byte_timeout_seconds: float = 10.0  # a new connection's first byte, then the head
    secret_key: str | None = field(default=None, repr=False)
    access_token_expire_minutes: int = 60
    refresh_token_expire_days: float = 14.0
    session_max_age_days: float = 30.0
    session_purge_interval_seconds: float = 600.0
    open_signup: bool = True
    product_write_access: ProductWriteAccess = ProductWriteAccess.PUBLIC
    login_max_failures: int = 10
    login_failure_window_seconds: int = 900
    login_account_max_delay_seconds: int = 60
    # Peers whose forwarding header is believed; none by default (the peer is the client).
    forwarded_allow_ips: tuple[IPNetwork, ...] = ()
    forwarded_header: ForwardedHeader = ForwardedHeader.X_FORWARDED_FOR
    password_hash_threads: int = 2
    event_loop: EventLoop = EventLoop.UVLOOP  # measured faster (bench/README)
    # Password reset and email verification (service/accounts/recovery.py, verification.py).
    public_url: str = "http://127.0.0.1:8000"
    reset_token_expire_minutes: int = 60
    verify_token_expire_minutes: int = 1440
    recovery_min_interval_seconds: int = 60
    require_verified_email: bool = False
    # The outbox and its sender (service/mail/).
    mail_url: str = field(default="file:./mail", repr=False)  # may hold a password
    mail_from: str = "Products service <no-reply@localhost>"
    mail_max_attempts: int = 8
    mail_retry_seconds: float = 30.0
    mail_timeout_seconds: float = 30.0
    mail_poll_seconds: float = 2.0
    mail_retention_days: float = 7.0
    # Two-factor login (service/accounts/totp.py): the issuer authenticator apps show
    # (the API document's title by default), and whether superusers must have it on.
    totp_issuer: str = "Products and accounts API"
    require_totp_for_superusers: bool = False
    # Prometheus metrics at GET /metrics (service/metrics/), for these client addresses only.
    metrics_enabled: bool = True
    metrics_allow_ips: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    # prometheus-client's own variable: set, the metrics go to files there, one set per
    # process, and a scrape merges them (run.py --workers sets it; service/supervisor.py).
    metrics_multiprocess_dir: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from a mapping such as os.environ; raise SettingsError on bad values."""
        reader = _EnvReader(environ)
        defaults = cls()
        database_path, postgres_url = _database(reader, defaults.database_path)
        settings = cls(
            host=reader.get("HOST", str, defaults.host),
            port=reader.get("PORT", parse_port, defaults.port),
            database_path=database_path,
            postgres_url=postgres_url,
            database_pool_size=reader.get(
                "DATABASE_POOL_SIZE", _int_between(1, 1000), defaults.database_pool_size
            ),
            database_synchronous=reader.get(
                "DATABASE_SYNCHRONOUS", _choice(Synchronous), defaults.database_synchronous
            ),
            database_readers=reader.get(
                "DATABASE_READERS", _int_between(1, 64), defaults.database_readers
            ),
            log_file=reader.get("LOG_FILE", _path, defaults.log_file),
            log_level=reader.get("LOG_LEVEL", _log_level, defaults.log_level),
            log_json=reader.get("LOG_JSON", parse_bool, defaults.log_json),
            log_stderr=reader.get("LOG_STDERR", parse_bool, defaults.log_stderr),
            log_rotation_bytes=reader.get("LOG_ROTATION", _size, defaults.log_rotation_bytes),
            log_retention=reader.get(
                "LOG_RETENTION", _int_between(1, 1000), defaults.log_retention
            ),
            max_body_bytes=reader.get(
                "MAX_BODY_BYTES", _int_between(1024, 1 << 30), defaults.max_body_bytes
            ),
            request_timeout_seconds=reader.get(
                "REQUEST_TIMEOUT_SECONDS", _positive_float, defaults.request_timeout_seconds
            ),
            keepalive_timeout_seconds=reader.get(
                "KEEPALIVE_TIMEOUT_SECONDS", _positive_float, defaults.keepalive_timeout_seconds
            ),
            first_byte_timeout_seconds=reader.get(
                "FIRST_BYTE_TIMEOUT_SECONDS", _positive_float, defaults.first_byte_timeout_seconds
            ),
            secret_key=reader.get("SECRET_KEY", _secret_key, None, secret=True),
            access_token_expire_minutes=reader.get(
                "ACCESS_TOKEN_EXPIRE_MINUTES",
                _int_between(1, 525600),
                defaults.access_token_expire_minutes,
            ),
            refresh_token_expire_days=reader.get(
                "REFRESH_TOKEN_EXPIRE_DAYS", _days, defaults.refresh_token_expire_days
            ),
            session_max_age_days=reader.get(
                "SESSION_MAX_AGE_DAYS", _days, defaults.session_max_age_days
            ),
            session_purge_interval_seconds=reader.get(
                "SESSION_PURGE_INTERVAL_SECONDS",
                _positive_float,
                defaults.session_purge_interval_seconds,
            ),
            open_signup=reader.get("OPEN_SIGNUP", parse_bool, defaults.open_signup),
            product_write_access=reader.get(
                "PRODUCT_WRITE_ACCESS",
                _choice(ProductWriteAccess),
                defaults.product_write_access,
            ),
            login_max_failures=reader.get(
                "LOGIN_MAX_FAILURES", _int_between(1, 1_000_000), defaults.login_max_failures
            ),
            login_failure_window_seconds=reader.get(
                "LOGIN_FAILURE_WINDOW_SECONDS",
                _int_between(1, 31_536_000),
                defaults.login_failure_window_seconds,
            ),
            login_account_max_delay_seconds=reader.get(
                "LOGIN_ACCOUNT_MAX_DELAY_SECONDS",
                _int_between(0, 86400),
                defaults.login_account_max_delay_seconds,
            ),
            forwarded_allow_ips=reader.get(
                "FORWARDED_ALLOW_IPS", _networks, defaults.forwarded_allow_ips
            ),
            forwarded_header=reader.get(
                "FORWARDED_HEADER", _choice(ForwardedHeader), defaults.forwarded_header
            ),
            password_hash_threads=reader.get(
                "PASSWORD_HASH_THREADS", _int_between(1, 32), defaults.password_hash_threads
            ),
            event_loop=reader.get("EVENT_LOOP", _choice(EventLoop), defaults.event_loop),
            public_url=reader.get("PUBLIC_URL", _public_url, defaults.public_url),
            reset_token_expire_minutes=reader.get(
                "RESET_TOKEN_EXPIRE_MINUTES",
                _int_between(1, 10080),
                defaults.reset_token_expire_minutes,
            ),
            verify_token_expire_minutes=reader.get(
                "VERIFY_TOKEN_EXPIRE_MINUTES",
                _int_between(1, 43200),
                defaults.verify_token_expire_minutes,
            ),
            recovery_min_interval_seconds=reader.get(
                "RECOVERY_MIN_INTERVAL_SECONDS",
                _int_between(0, 86400),
                defaults.recovery_min_interval_seconds,
            ),
            require_verified_email=reader.get(
                "REQUIRE_VERIFIED_EMAIL", parse_bool, defaults.require_verified_email
            ),
            mail_url=reader.get("MAIL_URL", _mail_url, defaults.mail_url, secret=True),
            mail_from=reader.get("MAIL_FROM", _mail_from, defaults.mail_from),
            mail_max_attempts=reader.get(
                "MAIL_MAX_ATTEMPTS", _int_between(1, 100), defaults.mail_max_attempts
            ),
            mail_retry_seconds=reader.get(
                "MAIL_RETRY_SECONDS", _positive_float, defaults.mail_retry_seconds
            ),
            mail_timeout_seconds=reader.get(
                "MAIL_TIMEOUT_SECONDS", _positive_float, defaults.mail_timeout_seconds
            ),
            mail_poll_seconds=reader.get(
                "MAIL_POLL_SECONDS", _positive_float, defaults.mail_poll_seconds
            ),
            mail_retention_days=reader.get(
                "MAIL_RETENTION_DAYS", _days, defaults.mail_retention_days
            ),
            totp_issuer=reader.get("TOTP_ISSUER", _totp_issuer, defaults.totp_issuer),
            require_totp_for_superusers=reader.get(
                "REQUIRE_TOTP_FOR_SUPERUSERS", parse_bool, defaults.require_totp_for_superusers
            ),
            metrics_enabled=reader.get("METRICS_ENABLED", parse_bool, defaults.metrics_enabled),
            metrics_allow_ips=reader.get(
                "METRICS_ALLOW_IPS", _networks, defaults.metrics_allow_ips
            ),
            metrics_multiprocess_dir=reader.get(
                "PROMETHEUS_MULTIPROC_DIR", _directory, defaults.metrics_multiprocess_dir
            ),
        )
        if settings.postgres_url is not None and settings.secret_key is None:
            # A generated key lives in a file on one machine; every node must sign alike.
            raise SettingsError(
                "SECRET_KEY must be set when DATABASE_URL is PostgreSQL "
                "(the same key on every node; try: openssl rand -hex 32)"
            )
        return settings

    @property
    def dialect(self) -> Dialect:
        """The engine the service runs on."""
        return Dialect.POSTGRESQL if self.postgres_url is not None else Dialect.SQLITE

    @property
    def database_url(self) -> str:
        """The database's URL for yoyo: postgresql://..., or sqlite:/// and the file's path.

        It may hold a password: show it with redacted_url(), never as it is.
        """
        return self.postgres_url or f"sqlite:///{self.database_path}"


def redacted_url(url: str) -> str:
    """The URL with any password replaced by `***`, fit for a log line or a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _database(reader: _EnvReader, default_path: Path) -> tuple[Path, str | None]:
    """DATABASE_URL (sqlite:///path or postgresql://...), else DATABASE_PATH."""
    url = reader.get("DATABASE_URL", _database_url, None, secret=True)
    path = reader.get("DATABASE_PATH", _path, None)
    if url is not None and path is not None:
        raise SettingsError("set DATABASE_URL or DATABASE_PATH, not both")
    if url is None:
        return path or default_path, None
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")), None
    return default_path, url


def _database_url(raw: str) -> str:
    url = raw.strip()
    if url.startswith("postgres://"):  # the older spelling; yoyo and asyncpg take both
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return url
    if url.startswith("postgresql://") and urlsplit(url).path.strip("/"):
        urlsplit(url).port  # noqa: B018 (raises ValueError for a port that is not a number)
        return url
    raise ValueError(
        "expected sqlite:///relative/file.db, sqlite:////absolute/file.db "
        "or postgresql://user[:password]@host[:port]/database"
    )


class _EnvReader:
    """Reads one variable at a time and names it in every error."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str, parse: Callable[[str], T], default: T, *, secret: bool = False) -> T:
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return parse(raw)
        except ValueError as error:
            shown = name if secret else f"{name}={raw!r}"  # never echo a secret
            raise SettingsError(f"{shown} is not valid: {error}") from None


def parse_bool(raw: str) -> bool:
    """Accept 1/0, true/false, yes/no, on/off in any case."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    return parse


_SIZE = re.compile(r"([0-9]+)\s*(B|KB|MB|GB)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3}  # as loguru counts
MIN_LOG_ROTATION = 10_000  # below this a file would rotate every few lines
MAX_LOG_ROTATION = 10 * 1000**3


def _size(raw: str) -> int:
    """A size in bytes: `10 MB`, `500KB`, `1 GB`, or a plain number of bytes."""
    match = _SIZE.fullmatch(raw.strip())
    if match is None:
        raise ValueError("expected a size such as 10 MB, 500 KB or 1 GB")
    size = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").upper()]
    if not MIN_LOG_ROTATION <= size <= MAX_LOG_ROTATION:
        raise ValueError("expected a size from 10 KB to 10 GB")
    return size


def parse_port(raw: str) -> int:
    """A TCP port, 1-65535: PORT and run.py's --port alike."""
    return _int_between(1, 65535)(raw)


def _positive_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not 0 < value < 86400:
        raise ValueError("expected a number of seconds above 0 and below 86400")
    return value


def _days(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of days, such as 14 or 0.5") from None
    if not 0 < value <= 3650:
        raise ValueError("expected a number of days above 0 and at most 3650")
    return value


def _networks(raw: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or CIDRs, such as `10.0.0.1, 192.168.0.0/16, fd00::/8`."""
    networks = []
    for item in raw.split(","):
        if not item.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{item.strip()!r} is not an IP address or CIDR "
                "(expected a comma-separated list such as 10.0.0.1,192.168.0.0/16,fd00::/8)"
            ) from None
    return tuple(networks)


def _path(raw: str) -> Path:
    return Path(raw)


def _directory(raw: str) -> Path:
    path = Path(raw)
    if not path.is_dir():
        raise ValueError("expected an existing directory")
    return path


def _log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in _LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)}")
    return value


def _secret_key(raw: str) -> str:
    if len(raw.encode()) < 32:
        raise ValueError("must be at least 32 bytes long (try: openssl rand -hex 32)")
    return raw


def _public_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("expected http(s)://host[:port][/path], without a query or fragment")
    return url


def _mail_url(raw: str) -> str:
    parse_mail_url(raw.strip())  # raises ValueError, which names the setting
    return raw.strip()


def _mail_from(raw: str) -> str:
    _, address = parseaddr(raw)
    if "@" not in address or any(ch in raw for ch in "\r\n"):
        raise ValueError("expected an address, such as 'Shop <no-reply@example.com>'")
    return raw.strip()


def _totp_issuer(raw: str) -> str:
    # Key URI format: the issuer prefixes the account in the label, split at a colon.
    issuer = raw.strip()
    if not 1 <= len(issuer) <= 64 or ":" in issuer or not issuer.isprintable():
        raise ValueError("expected 1 to 64 printable characters, without a colon")
    return issuer


def _choice(kind: type[E]) -> Callable[[str], E]:
    def parse(raw: str) -> E:
        for member in kind:
            if member.value.lower() == raw.strip().lower():
                return member
        raise ValueError(f"expected one of {', '.join(m.value for m in kind)}")

    return parse
