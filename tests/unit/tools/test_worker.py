"""`aftersale worker` process set-up that needs no broker."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.tools.gc_tuning import GC_THRESHOLDS
from streams.tools.worker import tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_sets_the_thresholds_and_freezes_what_exists() -> None:
    marker = [object()]  # a tracked object that exists before the call
    assert gc.is_tracked(marker)
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0
    assert not any(o is marker for o in gc.get_objects())  # frozen: out of every generation
