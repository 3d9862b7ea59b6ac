"""A static group member leaves its group when it stops cleanly (LeaveGroup v3, KIP-345).

The worker joins its consumer group with a stable `group_instance_id` (static membership), so
a worker restarted after kill -9 gets its partitions straight back, with no rebalance and no
wait for its old session to expire. aiokafka 0.14 never sends LeaveGroup for a static member
(as Java does not; `GroupCoordinator._maybe_leave_group`), and its LeaveGroup v0/v1 cannot name
one. So a worker stopped on purpose (scale-in, a drained node) would leave its partitions idle
for the whole session timeout.

Here `GroupCoordinator.close()` (what faust's clean shutdown reaches through
`consumer.stop()`) sends LeaveGroup v3 with (member_id, group_instance_id): the group
rebalances at once and the other workers take the partitions within a heartbeat. The member id
is sent too, so a stale process cannot evict a newer one that took its instance id (the broker
answers FENCED_INSTANCE_ID). Only the close path leaves (not aiokafka's max-poll-interval
path), and kill -9 runs no close, so a crash keeps static semantics. A process turns it off
with `leave_on_close(False)` (a rolling restart that comes back within the session timeout
then causes no rebalance at all).

Measured on Kafka 3.9.2 and 4.4.0, two static members, 6 partitions, heartbeat 1 s: the other
member held all partitions 0.3-0.7 s after SIGTERM with the leave, 9.6-11.2 s (the session
timeout) without.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

log = logging.getLogger("aftersale.worker")

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = (
    "aiokafka.consumer.group_coordinator:GroupCoordinator.close",
    "aiokafka.consumer.group_coordinator:GroupCoordinator._maybe_leave_group",
)


class LeaveGroupResponseV3(Response):  # type: ignore[misc]
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(
                ("member_id", String("utf-8")),
                ("group_instance_id", String("utf-8")),
                ("error_code", Int16),
            ),
        ),
    )


class LeaveGroupRequestV3(RequestStruct):  # type: ignore[misc]
    API_KEY = 13
    API_VERSION = 3  # v4 is the same, flexibly encoded; v5 adds a reason
    RESPONSE_TYPE = LeaveGroupResponseV3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class StaticLeaveGroupRequest(Request[LeaveGroupRequestV3]):  # type: ignore[misc]
    """LeaveGroup v3 (aiokafka picks the version per connection: brokers from 2.4 serve it)."""

    API_KEY = 13

    def __init__(self, group: str, members: list[tuple[str, str]]) -> None:
        self._group, self._members = group, members

    def build(self, request_struct_class: type[LeaveGroupRequestV3]) -> LeaveGroupRequestV3:
        return request_struct_class(self._group, self._members)


_leave = True


def leave_on_close(enabled: bool) -> None:
    """Whether this process's static members leave their groups when they stop cleanly."""
    global _leave
    _leave = enabled


async def _close(self: Any) -> None:
    self._aftersale_closing = True  # only the close path leaves, never the max-poll path
    await _aiokafka_close(self)


async def _maybe_leave_group(self: Any) -> None:
    instance_id = self._group_instance_id
    if instance_id is not None and getattr(self, "_aftersale_closing", False) and _leave:
        request = StaticLeaveGroupRequest(self.group_id, [(self.member_id or "", instance_id)])
        try:
            response = await self._send_req(request)  # best effort, as aiokafka's own leave
        except Exception as exc:  # broker down, or older than 2.4: the session timeout decides
            log.warning("static member %s could not leave %s: %r", instance_id, self.group_id, exc)
        else:
            errors = [response.error_code, *(member[2] for member in response.members)]
            if any(errors):
                log.warning(
                    "%s refused the leave of %s: errors %s", self.group_id, instance_id, errors
                )
            else:
                log.info("static member %s left group %s", instance_id, self.group_id)
    await _aiokafka_maybe_leave_group(self)  # a dynamic member's own leave; resets either way


_aiokafka_close = GroupCoordinator.close
_aiokafka_maybe_leave_group = GroupCoordinator._maybe_leave_group


def install() -> None:
    """Install the leave (idempotent)."""
    GroupCoordinator.close = _close
    GroupCoordinator._maybe_leave_group = _maybe_leave_group
