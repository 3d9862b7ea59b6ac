"""How Redis failures are told apart: refused (configuration, exit 2) or unavailable (wait)."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    NoPermissionError,
    ReadOnlyError,
    RedisError,
    TimeoutError,
)

from streams.errors import ConfigError
from streams.readside.redis_store import StoreRefused, StoreUnavailable, _wrap, admitted

REFUSED = [
    AuthenticationError("invalid username-password pair or user is disabled."),
    NoPermissionError("this user has no permissions to run the 'evalsha' command"),
    ConnectionError(
        "Error 1 connecting to 127.0.0.1:6380. [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
        "verify failed: self-signed certificate in certificate chain (_ssl.c:1006)."
    ),
]
UNAVAILABLE = [
    ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    TimeoutError("Timeout reading from socket"),
    BusyLoadingError("Redis is loading the dataset in memory"),
    ReadOnlyError("You can't write against a read only replica."),
]


@pytest.mark.parametrize("error", REFUSED, ids=lambda e: type(e).__name__)
def test_credentials_permissions_and_untrusted_servers_are_refusals(error: RedisError) -> None:
    wrapped = _wrap(error)
    assert isinstance(wrapped, StoreRefused)
    assert isinstance(wrapped, ConfigError)  # the commands exit 2 with its one line
    assert str(error) in str(wrapped)


@pytest.mark.parametrize("error", UNAVAILABLE, ids=lambda e: type(e).__name__)
def test_outages_are_waited_for(error: RedisError) -> None:
    wrapped = _wrap(error)
    assert isinstance(wrapped, StoreUnavailable)
    assert not isinstance(wrapped, ConfigError)


class PingOnly:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    async def ping(self) -> None:
        if self.error is not None:
            raise self.error


async def test_admitted_says_whether_redis_answers_and_names_the_url_when_refused() -> None:
    assert await admitted(PingOnly(None), "redis://:****@h:1/0")  # type: ignore[arg-type]
    down = PingOnly(StoreUnavailable("ConnectionError: refused"))
    assert not await admitted(down, "redis://:****@h:1/0")  # type: ignore[arg-type]
    refused = PingOnly(StoreRefused("AuthenticationError: invalid username-password pair"))
    with pytest.raises(StoreRefused, match=r"^Redis at redis://:\*\*\*\*@h:1/0 refused this"):
        await admitted(refused, "redis://:****@h:1/0")  # type: ignore[arg-type]
