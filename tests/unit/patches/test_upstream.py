"""The framework patches are guarded: one install, refused on versions they were not written
for, and a fingerprint of every upstream method they replace, wrap or override."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from importlib import import_module, metadata
from typing import Any

import pytest

from streams import patches
from streams.errors import DependencyError
from streams.live.app import LeanMonitor, RawSchema
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
from streams.patches.upstream import FINGERPRINTS, SUPPORTED, fingerprint, source_of

PATCH_MODULES = (
    recovery,
    handoff,
    fetch_stall,
    eos_commit,
    static_leave,
    uncommitted_seek,
    active_snapshot,
    table_start,
    changelog_write,
)


def overridden() -> Iterator[str]:
    """The faust methods the worker's own subclasses override."""
    for cls in (RawSchema, LeanMonitor):
        base = cls.__mro__[1]
        for name, value in vars(cls).items():
            if inspect.isfunction(value) and hasattr(base, name):
                yield f"{base.__module__}:{base.__name__}.{name}"


@pytest.mark.parametrize("target", sorted(FINGERPRINTS))
def test_the_upstream_method_is_the_one_the_patch_was_written_for(target: str) -> None:
    assert fingerprint(target) == FINGERPRINTS[target], (
        f"{target} changed upstream: re-check the code that replaces or wraps it against the "
        "new source, then record the new fingerprint (python -m streams.patches.upstream)"
    )


def test_every_replaced_or_overridden_method_is_fingerprinted() -> None:
    replaced = [target for module in PATCH_MODULES for target in module.REPLACES]
    assert len(replaced) == len(set(replaced))
    altered = set(recovery.ALTERS)
    assert set(FINGERPRINTS) == set(replaced) | altered | set(overridden())


def test_install_puts_every_replacement_in_place() -> None:
    patches.install()
    patches.install()  # idempotent
    for module in PATCH_MODULES:
        for target in module.REPLACES:
            module_name, _, qualname = target.partition(":")
            class_name, _, method = qualname.partition(".")
            installed = inspect.getattr_static(
                getattr(import_module(module_name), class_name), method
            )
            function = installed.fget if isinstance(installed, property) else installed
            assert function.__module__ == module.__name__, target


async def test_recovery_waits_for_changelog_records_at_most_its_idle_time() -> None:
    patches.install()
    from faust.tables import recovery as faust_recovery

    shim: Any = vars(faust_recovery)["asyncio"]  # what the recovery loop calls asyncio
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        await shim.wait_for(never, timeout=5.0)
    waited = asyncio.get_running_loop().time() - started
    assert recovery.IDLE_S <= waited < 5.0
    assert shim.TimeoutError is asyncio.TimeoutError  # the rest is asyncio


def test_the_fingerprint_reads_the_upstream_file_not_the_installed_patch() -> None:
    patches.install()
    upstream = source_of("faust.transport.consumer:Consumer._drain_messages")
    assert "# This is the background thread" in upstream  # faust's comment, not in the patch
    assert "_first_step" not in upstream


def test_the_supported_versions_are_the_pinned_ones() -> None:
    for package, version in SUPPORTED.items():
        assert metadata.version(package) == version


@pytest.mark.parametrize("package", sorted(SUPPORTED))
def test_another_version_is_refused_with_a_message_that_names_it(
    package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = metadata.version

    def version(name: str) -> str:
        return "9.9.9" if name == package else real(name)

    monkeypatch.setattr(metadata, "version", version)
    with pytest.raises(DependencyError, match=rf"{package} is 9\.9\.9.*written for"):
        patches.install()
