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


def run_against_kafka(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """Run `work`, which talks to the Kafka of `settings`, to its end.

    A Kafka or network error becomes a `ConfigError` naming the bootstrap servers (the CLI
    prints it as one line). aiokafka logs every failed connection attempt meanwhile; the one
    line says it better, so those logs are silenced while `work` runs.
    """
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(work)
    except (KafkaError, OSError) as exc:
        raise ConfigError(f"Kafka at {settings.kafka_bootstrap}: {exc!r}") from None
    finally:
        aiokafka_log.setLevel(level)
