"""Settings.from_env: defaults, booleans, and refusals that name the variable."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from service.db.dialect import Dialect
from service.db.sqlite import Synchronous
from service.settings import (
    EventLoop,
    ForwardedHeader,
    ProductWriteAccess,
    Settings,
    SettingsError,
    redacted_url,
)

GOOD_KEY = "k" * 40


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.database_path == Path("./products.db")
    assert settings.database_url == "sqlite:///products.db"
    assert settings.database_synchronous is Synchronous.NORMAL
    assert settings.log_file == Path("logs/app.log")
    assert settings.log_level == "INFO"
    assert settings.log_json is False
    assert settings.log_stderr is True
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.request_timeout_seconds == 30
    assert settings.keepalive_timeout_seconds == 75
    assert settings.secret_key is None
    assert settings.access_token_expire_minutes == 60
    assert settings.open_signup is True
    assert settings.product_write_access is ProductWriteAccess.PUBLIC
    assert settings.login_max_failures == 10
    assert settings.login_failure_window_seconds == 900
    assert settings.event_loop is EventLoop.UVLOOP
    assert settings.first_byte_timeout_seconds == 10.0


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"PATH": "/bin", "HOME": "/root", "LANG": "C"}) == Settings()


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            "HOST": "10.1.2.3",
            "PORT": "8080",
            "DATABASE_PATH": "/data/app.db",
            "DATABASE_SYNCHRONOUS": "full",
            "LOG_FILE": "/var/log/app.log",
            "LOG_LEVEL": "debug",
            "MAX_BODY_BYTES": "2048",
            "REQUEST_TIMEOUT_SECONDS": "2.5",
            "KEEPALIVE_TIMEOUT_SECONDS": "90.5",
            "FIRST_BYTE_TIMEOUT_SECONDS": "4.5",
            "SECRET_KEY": GOOD_KEY,
            "ACCESS_TOKEN_EXPIRE_MINUTES": "15",
            "PRODUCT_WRITE_ACCESS": "SuperUser",
            "LOGIN_MAX_FAILURES": "3",
            "LOGIN_FAILURE_WINDOW_SECONDS": "60",
            "EVENT_LOOP": "asyncio",
        }
    )
    assert settings.host == "10.1.2.3"
    assert settings.port == 8080
    assert settings.database_path == Path("/data/app.db")
    assert settings.database_url == "sqlite:////data/app.db"  # absolute: four slashes
    assert settings.database_synchronous is Synchronous.FULL
    assert settings.log_file == Path("/var/log/app.log")
    assert settings.log_level == "DEBUG"
    assert settings.max_body_bytes == 2048
    assert settings.request_timeout_seconds == 2.5
    assert settings.keepalive_timeout_seconds == 90.5
    assert settings.first_byte_timeout_seconds == 4.5
    assert settings.secret_key == GOOD_KEY
    assert settings.access_token_expire_minutes == 15
    assert settings.product_write_access is ProductWriteAccess.SUPERUSER
    assert settings.login_max_failures == 3
    assert settings.login_failure_window_seconds == 60
    assert settings.event_loop is EventLoop.ASYNCIO


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("false", False),
        ("yes", True),
        ("no", False),
        ("on", True),
        ("off", False),
        ("TRUE", True),
        ("False", False),
        ("Yes", True),
        ("OFF", False),
        (" on ", True),
    ],
)
@pytest.mark.parametrize(
    ("variable", "field"),
    [("LOG_JSON", "log_json"), ("LOG_STDERR", "log_stderr"), ("OPEN_SIGNUP", "open_signup")],
)
def test_booleans(variable: str, field: str, raw: str, expected: bool) -> None:
    assert getattr(Settings.from_env({variable: raw}), field) is expected


@pytest.mark.parametrize("raw", ["2", "-1", "maybe", "y", "n", "enabled", "truee", "1.0"])
@pytest.mark.parametrize("variable", ["LOG_JSON", "LOG_STDERR", "OPEN_SIGNUP"])
def test_bad_boolean_is_refused_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: raw})
    message = str(caught.value)
    assert variable in message
    assert "true" in message.lower()  # says what it accepts


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("PORT", "abc"),
        ("PORT", "0"),
        ("PORT", "65536"),
        ("PORT", "-1"),
        ("PORT", "80.5"),
        ("PORT", "8o80"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_LEVEL", "verbose"),
        ("DATABASE_SYNCHRONOUS", "OFF"),
        ("EVENT_LOOP", "tokio"),
        ("DATABASE_SYNCHRONOUS", "extra-safe"),
        ("DATABASE_READERS", "0"),
        ("DATABASE_READERS", "many"),
        ("MAX_BODY_BYTES", "1MB"),
        ("MAX_BODY_BYTES", "0"),
        ("REQUEST_TIMEOUT_SECONDS", "0"),
        ("REQUEST_TIMEOUT_SECONDS", "-5"),
        ("REQUEST_TIMEOUT_SECONDS", "soon"),
        ("REQUEST_TIMEOUT_SECONDS", "nan"),
        ("REQUEST_TIMEOUT_SECONDS", "inf"),
        ("KEEPALIVE_TIMEOUT_SECONDS", "0"),
        ("KEEPALIVE_TIMEOUT_SECONDS", "forever"),
        ("FIRST_BYTE_TIMEOUT_SECONDS", "0"),
        ("FIRST_BYTE_TIMEOUT_SECONDS", "soon"),
        ("FIRST_BYTE_TIMEOUT_SECONDS", "inf"),
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "0"),
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "an hour"),
        ("PRODUCT_WRITE_ACCESS", "admin"),
        ("LOGIN_MAX_FAILURES", "0"),
        ("LOGIN_FAILURE_WINDOW_SECONDS", "-1"),
    ],
)
def test_bad_value_is_refused_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: raw})
    assert variable in str(caught.value)


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize("key", ["short", "x" * 31, "a-secret-of-thirty-one-bytes-xx"])
def test_short_secret_key_is_refused_without_echoing_it(key: str) -> None:
    assert len(key.encode()) < 32
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SECRET_KEY": key})
    message = str(caught.value)
    assert "SECRET_KEY" in message
    assert "32" in message
    assert key not in message
    assert key not in repr(caught.value)
    assert caught.value.__cause__ is None or key not in str(caught.value.__cause__)
    assert caught.value.__suppress_context__ or caught.value.__context__ is None


@pytest.mark.parametrize("key", ["x" * 32, "ключ" * 4, GOOD_KEY])
def test_secret_key_of_32_bytes_or_more_is_accepted(key: str) -> None:
    assert len(key.encode()) >= 32
    assert Settings.from_env({"SECRET_KEY": key}).secret_key == key


def test_multibyte_key_is_measured_in_bytes() -> None:
    with pytest.raises(SettingsError):
        Settings.from_env({"SECRET_KEY": "ключ" * 3 + "abcdefg"})  # 31 bytes, 19 characters


def test_empty_values_mean_the_default() -> None:
    settings = Settings.from_env({"PORT": "", "LOG_JSON": "", "SECRET_KEY": ""})
    assert (settings.port, settings.log_json, settings.secret_key) == (8000, False, None)


# --- DATABASE_URL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///data/x.db", Path("data/x.db")), ("sqlite:////srv/x.db", Path("/srv/x.db"))],
)
def test_a_sqlite_url_names_the_file(url: str, path: Path) -> None:
    settings = Settings.from_env({"DATABASE_URL": url})
    assert (settings.database_path, settings.postgres_url) == (path, None)
    assert settings.dialect is Dialect.SQLITE


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_selects_postgresql(scheme: str) -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": f"{scheme}://app@db.internal:5433/shop",
            "SECRET_KEY": GOOD_KEY,
            "DATABASE_POOL_SIZE": "25",
        }
    )
    assert settings.postgres_url == "postgresql://app@db.internal:5433/shop"
    assert settings.database_url == settings.postgres_url
    assert settings.dialect is Dialect.POSTGRESQL
    assert settings.database_pool_size == 25


def test_a_transaction_pooler_is_named_for_postgresql_only() -> None:
    pooled = {"DATABASE_URL": "postgresql://app@pgbouncer:6432/shop", "SECRET_KEY": GOOD_KEY}
    assert not Settings.from_env(pooled).database_transaction_pooler
    pooled["DATABASE_TRANSACTION_POOLER"] = "on"
    assert Settings.from_env(pooled).database_transaction_pooler
    with pytest.raises(SettingsError, match="DATABASE_TRANSACTION_POOLER"):
        Settings.from_env({**pooled, "DATABASE_TRANSACTION_POOLER": "sometimes"})
    with pytest.raises(SettingsError, match="DATABASE_TRANSACTION_POOLER needs a PostgreSQL"):
        Settings.from_env({"DATABASE_TRANSACTION_POOLER": "1"})


def test_postgresql_needs_a_secret_key_shared_by_every_node() -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        Settings.from_env({"DATABASE_URL": "postgresql://app@db/shop"})


@pytest.mark.parametrize(
    "url", ["mysql://app@db/shop", "postgresql://app@db", "sqlite:///", "products.db"]
)
def test_an_unusable_url_is_refused_without_echoing_it(url: str) -> None:
    secret_url = url.replace("app@", "app:hunter2-secret@")
    with pytest.raises(SettingsError, match="DATABASE_URL") as raised:
        Settings.from_env({"DATABASE_URL": secret_url, "SECRET_KEY": GOOD_KEY})
    assert "hunter2" not in str(raised.value)


def test_database_url_and_database_path_together_are_refused() -> None:
    with pytest.raises(SettingsError, match="not both"):
        Settings.from_env({"DATABASE_URL": "sqlite:///a.db", "DATABASE_PATH": "b.db"})


def test_a_password_in_the_url_is_redacted_for_display() -> None:
    assert (
        redacted_url("postgresql://app:s3cret@db:5432/shop") == "postgresql://app:***@db:5432/shop"
    )
    assert redacted_url("postgresql://app@db/shop") == "postgresql://app@db/shop"


def test_a_port_that_is_not_a_number_is_refused_and_secrets_stay_out_of_repr() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        Settings.from_env(
            {"DATABASE_URL": "postgresql://app:pw@db:abc/shop", "SECRET_KEY": GOOD_KEY}
        )
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://app:hunter2@db/shop", "SECRET_KEY": GOOD_KEY}
    )
    assert "hunter2" not in repr(settings) and GOOD_KEY not in repr(settings)


# --- issue 14: sessions' maximum age, trusted proxies, the per-account delay --------------


def test_account_and_proxy_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.session_max_age_days == 30
    assert settings.login_account_max_delay_seconds == 60
    assert settings.forwarded_allow_ips == ()  # no proxy trusted: the peer is the client
    assert settings.forwarded_header is ForwardedHeader.X_FORWARDED_FOR


def test_account_and_proxy_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "SESSION_MAX_AGE_DAYS": "7.5",
            "LOGIN_ACCOUNT_MAX_DELAY_SECONDS": "0",
            "FORWARDED_ALLOW_IPS": " 10.0.0.1, 192.168.0.0/16,fd00::/8,",
            "FORWARDED_HEADER": "Forwarded",
        }
    )
    assert settings.session_max_age_days == 7.5
    assert settings.login_account_max_delay_seconds == 0  # off
    assert settings.forwarded_allow_ips == (
        ipaddress.ip_network("10.0.0.1/32"),
        ipaddress.ip_network("192.168.0.0/16"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert settings.forwarded_header is ForwardedHeader.FORWARDED


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("SESSION_MAX_AGE_DAYS", "0"),
        ("SESSION_MAX_AGE_DAYS", "-1"),
        ("SESSION_MAX_AGE_DAYS", "a month"),
        ("SESSION_MAX_AGE_DAYS", "3651"),
        ("LOGIN_ACCOUNT_MAX_DELAY_SECONDS", "-1"),
        ("LOGIN_ACCOUNT_MAX_DELAY_SECONDS", "1.5"),
        ("LOGIN_ACCOUNT_MAX_DELAY_SECONDS", "86401"),
        ("FORWARDED_ALLOW_IPS", "*"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.1,proxy.internal"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.0/33"),
        ("FORWARDED_HEADER", "x-real-ip"),
    ],
)
def test_bad_account_or_proxy_setting_is_refused_naming_the_variable(
    variable: str, raw: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: raw})
    assert variable in str(caught.value)
