"""Read-side settings: each with its environment variable, default and meaning.

`ReadSettings.from_env()` reads `AFTERSALE_*` variables as the worker's settings do
(`streams/live/settings.py`, which also gives the Kafka options, the app id and so the status
topic) and refuses bad values with a message that names the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from streams.errors import ConfigError
from streams.live.settings import (
    PREFIX,
    Secret,
    Settings,
    _address,
    _optional_path,
    _port,
    _positive_int,
    _seconds,
    _setting,
    _text,
    read_env,
)
from streams.live.settings import markdown_table as settings_table

#: URL schemes redis-py connects with: plain TCP, TLS, a Unix socket.
SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A Redis URL whose password never prints (`redis://user:****@host:6379/0`)."""

    value: str

    @classmethod
    def parse(cls, text: str) -> RedisUrl:
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"not a Redis URL ({exc})") from None
        if parts.scheme not in SCHEMES:
            raise ValueError("must be a redis://, rediss:// (TLS) or unix:// URL")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("must name a host (redis://host:6379/0)")
        return cls(text)

    @property
    def tls(self) -> bool:
        return self.value.startswith("rediss:")

    @property
    def has_password(self) -> bool:
        return urlsplit(self.value).password is not None

    @property
    def redacted(self) -> str:
        """The URL with its password (if any) replaced by `****`."""
        parts = urlsplit(self.value)
        if parts.password is None:
            return self.value
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:****@{host}" + ("" if parts.port is None else f":{parts.port}")
        return SplitResult(parts.scheme, netloc, parts.path, "", "").geturl()

    def __repr__(self) -> str:
        return f"RedisUrl({self.redacted!r})"

    __str__ = __repr__


def _window_days(text: str) -> int:
    value = _positive_int(text)
    if value > 3660:
        raise ValueError("must be at most 3660 days")
    return value


@dataclass(frozen=True, slots=True)
class ReadSettings:
    """The projector's and the read API's settings; build with `ReadSettings.from_env()`."""

    redis_url: RedisUrl = _setting(
        RedisUrl("redis://127.0.0.1:6379/0"),
        "Redis of the read side: redis://[user:password@]host:port/db, rediss:// for TLS, "
        "unix:///path.sock (the password is never printed)",
        RedisUrl.parse,
    )
    redis_password: Secret = _setting(
        Secret(""), "Redis password when not in the URL (secret: never printed)", Secret
    )
    redis_ssl_cafile: Path | None = _setting(
        None, "CA bundle for rediss:// (default: the system's)", _optional_path
    )
    redis_timeout: float = _setting(
        5.0, "seconds before a Redis connection or command counts as failed", _seconds
    )
    projector_group: str = _setting(
        "", "the projector's consumer group (default: <app id>-projector)", _text
    )
    projector_batch: int = _setting(
        2000, "most status records applied to Redis in one atomic write", _positive_int
    )
    projector_retry_max: float = _setting(
        5.0, "longest wait between two tries while Redis is unavailable (seconds)", _seconds
    )
    api_port: int = _setting(8080, "port of the read API (aftersale api)", _port)
    api_bind: str = _setting(
        "127.0.0.1",
        "address the read API listens on (0.0.0.0: every interface, e.g. in a pod)",
        _address,
    )
    rate_min_paid: int = _setting(
        20,
        "paid orders in the window a merchant needs to be ranked by refund rate",
        _positive_int,
    )
    rate_max_window_days: int = _setting(
        90, "longest refund-rate window the read API accepts, in days", _window_days
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ReadSettings:
        """Read `AFTERSALE_*` variables (default: os.environ); `overrides` win over both."""
        return read_env(cls, env, overrides, masked=(Secret, RedisUrl))

    def check(self) -> None:
        """Refuse combinations that cannot work."""
        if self.redis_ssl_cafile is not None:
            if not self.redis_url.tls:
                raise ConfigError(
                    f"{PREFIX}REDIS_SSL_CAFILE is set but {PREFIX}REDIS_URL is not rediss://"
                )
            if not self.redis_ssl_cafile.is_file():
                raise ConfigError(
                    f"{PREFIX}REDIS_SSL_CAFILE: no such file: {self.redis_ssl_cafile}"
                )

    def group(self, worker: Settings) -> str:
        """The projector's consumer group."""
        return self.projector_group or f"{worker.app_id}-projector"


def status_topic(worker: Settings) -> str:
    """The read side's feed: the worker's internal topic `<app id>-status`."""
    return worker.topics().status


def key_prefix(worker: Settings) -> str:
    """Every Redis key of the read side starts with this (one app id, one namespace)."""
    return f"{worker.app_id}:"


def markdown_table() -> str:
    """The read side's configuration table (as the README's of the worker)."""
    return settings_table(ReadSettings, wrapped=(Secret, RedisUrl))
