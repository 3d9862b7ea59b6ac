"""The worker's policy file, read again when it changes (an edited file, or a Kubernetes
ConfigMap update swapping the mounted file), and taken without a restart when the change
moves nothing already running (`streams.rules.policy.reload_refusal`): a new version that
takes effect later, a freeze ahead. A broken or refused file is logged, counted, and the
worker goes on with the policy it has.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

from streams.errors import PolicyError
from streams.rules.policy import Policy, load_policy, reload_refusal

log = logging.getLogger(__name__)

#: What tells a changed file: its inode (a ConfigMap update swaps it), mtime and size.
Stamp = tuple[int, int, int]


def _stamp(path: Path) -> Stamp | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


class PolicyFile:
    """The policy file the worker runs, and the policy it last took from it."""

    def __init__(self, path: Path, policy: Policy) -> None:
        self.path, self.policy = path, policy
        self.stamp = _stamp(path)
        #: Checks that found the file changed, by what became of it.
        self.outcomes = {"taken": 0, "refused": 0, "invalid": 0}

    def poll(self, now: datetime) -> Policy | None:
        """The file's policy if the file changed and it may be taken at `now`, else None."""
        stamp = _stamp(self.path)
        if stamp == self.stamp:
            return None
        self.stamp = stamp
        try:
            new = load_policy(self.path)
        except PolicyError as exc:
            self.outcomes["invalid"] += 1
            log.error("policy file changed but cannot be used: %s; running the previous one", exc)
            return None
        if new == self.policy:
            return None
        why = reload_refusal(self.policy, new, now)
        if why is not None:
            self.outcomes["refused"] += 1
            log.error(
                "policy file %s changed but is not taken: %s; running the previous one until a "
                "restart",
                self.path,
                why,
            )
            return None
        self.outcomes["taken"] += 1
        self.policy = new
        log.warning("policy file %s changed: taken (%d versions)", self.path, 1 + len(new.versions))
        return new
