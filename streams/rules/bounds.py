"""The largest record of each output topic that the contract's size bounds allow (pure).

Identifiers have at most 256 characters, amounts at most 2^53 - 1, times end in year 9999, a
dead letter carries at most 64 KiB of its original and 1024 characters of detail. The worst
record of each output topic is built here from those bounds with the same code that builds
the real ones, and measured: JSON escapes a control character as six bytes (`\\u0000`), the
most any character of an identifier can take. A topic (and the producer) must accept a record
batch holding that record, with Kafka's own framing around it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final

import orjson

from streams.contract.deadletters import (
    DETAIL_MAX,
    ID_MAX_CHARS,
    KEY_MAX_BYTES,
    ORIGINAL_MAX,
    dead_letter,
)
from streams.contract.topics import ACTIONS, DEADLETTER, NOTIFICATIONS
from streams.errors import DEAD_LETTER_CODES, InvalidTransition
from streams.rules.effects import Action, Reminder

#: Kafka's framing of a batch holding one record: the batch header (61 bytes) and the record's
#: own varints and attributes (at most 30 bytes), rounded up.
FRAMING_BYTES: Final = 128
#: A Kafka topic name has at most 249 characters (of [a-zA-Z0-9._-]).
TOPIC_NAME_MAX: Final = 249
_WORST_ID: Final = "\x00" * ID_MAX_CHARS
_LATEST: Final = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_INT64_MAX: Final = 2**63 - 1


@cache
def largest_value(topic: str) -> int:
    """Bytes of the largest record value the bounds allow on `topic` (a contract output)."""
    return len(orjson.dumps(largest_record(topic)))


def largest_record(topic: str) -> dict[str, Any]:
    """The largest record the bounds allow on `topic` (a contract output)."""
    if topic == ACTIONS:
        action = Action(
            "auto_approve", "merchant_receipt", _WORST_ID, _WORST_ID, _WORST_ID, _WORST_ID,
            "return_refund", 2**53 - 1, "CNY", _LATEST,
        )  # fmt: skip
        return action.record(_LATEST)
    if topic == NOTIFICATIONS:
        reminder = Reminder(
            "merchant_receipt", timedelta(days=36500, microseconds=999999), _WORST_ID,
            _WORST_ID, _WORST_ID, _WORST_ID, _LATEST, _LATEST,
        )  # fmt: skip
        return reminder.record()
    if topic == DEADLETTER:
        assert max(DEAD_LETTER_CODES, key=len) == InvalidTransition.code  # the longest code
        record = dead_letter(
            InvalidTransition("\x00" * DETAIL_MAX),
            b"\x00" * (ORIGINAL_MAX + 1),
            "t" * TOPIC_NAME_MAX,
            2**31 - 1,
            _INT64_MAX,
        )
        record["original_size"] = 2**31 - 1
        return record
    raise ValueError(f"not an output topic of the contract: {topic!r}")


def largest_batch(topic: str) -> int:
    """Bytes of a record batch holding the largest record of `topic`, key and framing included."""
    return largest_value(topic) + KEY_MAX_BYTES + FRAMING_BYTES
