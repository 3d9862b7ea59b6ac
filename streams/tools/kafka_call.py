"""The one way the command-line tools talk to Kafka: errors become one line, not a traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiokafka.errors import KafkaError

from streams.errors import ConfigError
from streams.live.settings import Settings

T = TypeVar("T")


class _LastReason(logging.Handler):
    """Keeps the last error aiokafka logged: why a connection failed (bad credentials, an
    untrusted certificate), which its exceptions leave out ("Unable to bootstrap")."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.reason = record.getMessage()


def run_against_kafka(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """Run `work`, which talks to the Kafka of `settings`, to its end.

    A Kafka or network error becomes a `ConfigError` naming the bootstrap servers and, where
    aiokafka logged one, the reason (the CLI prints it as one line; no secret is in either).
    aiokafka's own logs are kept out of the terminal meanwhile: the one line says it better.
    """
    aiokafka_log = logging.getLogger("aiokafka")
    level, propagate = aiokafka_log.level, aiokafka_log.propagate
    reasons = _LastReason()
    aiokafka_log.addHandler(reasons)
    aiokafka_log.setLevel(logging.ERROR)
    aiokafka_log.propagate = False
    try:
        return asyncio.run(work)
    except (KafkaError, OSError) as exc:
        why = f" ({reasons.reason})" if reasons.reason else ""
        raise ConfigError(f"Kafka at {settings.kafka_bootstrap}: {exc!r}{why}") from None
    finally:
        aiokafka_log.removeHandler(reasons)
        aiokafka_log.setLevel(level)
        aiokafka_log.propagate = propagate
