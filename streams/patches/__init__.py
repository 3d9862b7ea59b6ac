"""Replacements of faust-streaming and aiokafka internals that the worker depends on.

    recovery     table recovery under exactly_once asks the broker for changelog high-waters,
                 ends within a second of the changelog running dry, and never skips
                 changelog records for a rebalance that came in between
    handoff      the fetcher hands records to the stream eagerly, and lets a full queue ebb
    fetch_stall  no fetch of idle partitions alone while busy ones hold untaken records
    eos_commit   each partition's outbox rides in the transaction of its offsets
    static_leave a static group member leaves its group when it stops cleanly
    uncommitted_seek  seeking to committed offsets also rewinds partitions never committed,
                 so records faust dropped at a rebalance are read again
    active_snapshot  the consumer thread drains only the partitions active when asked
    table_start  the table manager starts at once (faust waited a second for late tables)
    changelog_write  restored changelog records go through the worker's write path (and
                 its due index) when the store has one

`install()` installs them all, once, and refuses to (a `DependencyError` naming the package)
on a faust-streaming or aiokafka version they were not written for. `upstream.py` lists every
upstream method replaced, wrapped or overridden, with a fingerprint of its source, which a
unit test checks.
"""

from __future__ import annotations

from importlib import metadata

from streams.errors import DependencyError
from streams.patches import (
    active_snapshot,
    changelog_write,
    eos_commit,
    fetch_stall,
    handoff,
    recovery,
    static_leave,
    table_start,
    uncommitted_seek,
)


def check_versions() -> None:
    """Refuse versions of faust-streaming or aiokafka the patches were not written for."""
    from streams.patches.upstream import SUPPORTED  # (also run as a script: imported here)

    for package, wanted in SUPPORTED.items():
        try:
            found = metadata.version(package)
        except metadata.PackageNotFoundError:
            found = "not installed"
        if found != wanted:
            raise DependencyError(
                f"{package} is {found}, but the worker's framework patches (streams/patches) "
                f"were written for {wanted}: install {package}=={wanted}, or re-check the "
                "patches against the new version (python -m streams.patches.upstream)"
            )


def install() -> None:
    """Install every patch (idempotent), after checking the installed versions."""
    check_versions()
    recovery.install()
    handoff.install()
    fetch_stall.install()
    eos_commit.install()
    static_leave.install()
    uncommitted_seek.install()
    active_snapshot.install()
    table_start.install()
    changelog_write.install()
