"""What the worker's producer sends at most, and what each output topic must therefore accept.

The worker sends each partition's outputs as record batches of up to PRODUCER_BATCH_BYTES
(`streams.patches.eos_commit`), in produce requests of up to PRODUCER_REQUEST_BYTES. A topic
whose `max.message.bytes` is below a batch, or below the largest single record the contract's
bounds allow (`streams.rules.bounds`), would refuse a send: the transaction aborts and the
worker stops, and on restart it would redo the same record and stop again. So `aftersale
topics check` and the worker's start compare them first, and say what to raise.
"""

from __future__ import annotations

from typing import Final

from streams.contract.topics import OUTPUTS
from streams.rules.bounds import largest_batch

#: The worker producer's record batch size (faust's `producer_max_batch_size`).
PRODUCER_BATCH_BYTES: Final = 512 * 1024
#: The worker producer's largest request (faust's `producer_max_request_size`).
PRODUCER_REQUEST_BYTES: Final = 1024 * 1024


def required_max_message_bytes(contract_topic: str) -> int:
    """The `max.message.bytes` an output topic needs: a full batch, or its largest record."""
    return max(PRODUCER_BATCH_BYTES, largest_batch(contract_topic))


def output_needs(prefix: str = "") -> dict[str, int]:
    """The `max.message.bytes` each output topic (named with `prefix`) needs at least."""
    return {prefix + topic: required_max_message_bytes(topic) for topic in OUTPUTS}
