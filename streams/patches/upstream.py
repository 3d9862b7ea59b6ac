"""The upstream code the patches replace, wrap or override, fingerprinted.

faust-streaming and aiokafka are pinned, but a bump would silently re-point a copied or
wrapped method at code it was not written for. Every such method is listed here with a
fingerprint of its source as installed when the patch was written; a unit test
(tests/unit/patches/test_upstream.py) recomputes them, so a bump fails in seconds, without a
broker, and names each method to re-check.

    python -m streams.patches.upstream      # print the installed fingerprints (after a re-check)
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import sys
import textwrap
from typing import Final

#: The versions the patches were written for (`streams.patches.install` refuses others).
SUPPORTED: Final = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}

#: "module:Class.method" -> sha256 (first 16 hex digits) of the method's source.
FINGERPRINTS: Final[dict[str, str]] = {
    # streams.patches.recovery
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._highwaters": "6a6d54f09c7082aa",
    "faust.tables.recovery:Recovery._slurp_changelogs": "29b72c0edeeaa127",
    "faust.tables.recovery:Recovery.on_recovery_completed": "a63912ae5efdd1d4",
    "faust.transport.consumer:ThreadDelegateConsumer.position": "a6e88abf54d9e211",
    "faust.tables.recovery:Recovery.on_rebalance": "daa42029a0bd6bdf",
    "faust.tables.recovery:Recovery._seek_offsets": "a3f66861b34f3a4c",
    # streams.patches.handoff
    "faust.transport.consumer:Consumer._drain_messages": "6b6a22fa66e689d5",
    "faust.transport.producer:ProducerBuffer.size": "d8e11abd545e7f0b",
    # streams.patches.fetch_stall
    "aiokafka.consumer.fetcher:Fetcher._get_actions_per_node": "edd8d136fe2eeca0",
    "aiokafka.consumer.fetcher:Fetcher._proc_fetch_request": "dd02fbcce1b350e6",
    # streams.patches.eos_commit
    "faust.transport.consumer:Consumer._commit_tps": "097d073ca822bd01",
    "faust.transport.drivers.aiokafka:Producer.commit_transactions": "4978739e5439b932",
    "faust.transport.drivers.aiokafka:Producer.abort_transaction": "8eb4635d5b0f7f91",
    "faust.transport.drivers.aiokafka:Producer.stop_transaction": "b72a93630aca5b6d",
    # streams.patches.static_leave
    "aiokafka.consumer.group_coordinator:GroupCoordinator.close": "0c1ffc213c7739dd",
    "aiokafka.consumer.group_coordinator:GroupCoordinator._maybe_leave_group": "7ae174a066d78176",
    # streams.patches.uncommitted_seek
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.seek_to_committed": "3335d0ac3af169c7",
    # streams.patches.active_snapshot
    "faust.transport.consumer:Consumer._wait_next_records": "920120740535d0bc",
    # streams.patches.table_start
    "faust.tables.manager:TableManager.on_start": "35aa469ac19e96ab",
    # streams.patches.changelog_write
    "faust.stores.rocksdb:Store.apply_changelog_batch": "ec7d6bb0b21540ce",
    # streams.live.app: RawSchema and LeanMonitor override these
    "faust.serializers.schemas:Schema.compile": "85e185110f1e5c9f",
    "faust.sensors.monitor:Monitor.on_message_in": "ac5df8be931ef56f",
    "faust.sensors.monitor:Monitor.on_stream_event_in": "a9ef386b70dff4b3",
    "faust.sensors.monitor:Monitor.on_stream_event_out": "755c8dbd70fd8bec",
    "faust.sensors.monitor:Monitor.on_message_out": "023360dfd9d59487",
}


def source_of(target: str) -> str:
    """The source of `target` ("module:Class.method") as the installed module file has it
    (read from the file, so a patch installed in this process does not hide it)."""
    module_name, _, qualname = target.partition(":")
    class_name, _, method = qualname.partition(".")
    module = importlib.import_module(module_name)
    text = inspect.getsource(module)
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == method:
                    segment = ast.get_source_segment(text, item, padded=True)
                    if segment is not None:
                        return textwrap.dedent(segment)
    raise LookupError(f"{target}: not found in {module.__file__}")


def fingerprint(target: str) -> str:
    """sha256 (first 16 hex digits) of `target`'s source."""
    return hashlib.sha256(source_of(target).encode("utf-8")).hexdigest()[:16]


def main() -> int:
    for target in FINGERPRINTS:
        print(f'    "{target}": "{fingerprint(target)}",')
    return 0


if __name__ == "__main__":
    sys.exit(main())
