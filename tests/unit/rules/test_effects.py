"""Effects: immutable values the engine returns."""

from __future__ import annotations

from typing import get_args

import pytest

from streams.rules.effects import Effect, OrderPaid
from tests.unit.factories import T0


def test_no_two_effect_types_have_the_same_number_of_fields() -> None:
    # Effects are NamedTuples: equal arity would let tuple equality confuse two types.
    types = get_args(Effect)
    assert len(types) == 5
    assert len({len(t._fields) for t in types}) == len(types)


def test_an_effect_is_immutable() -> None:
    paid = OrderPaid("o-7", "m-3", T0, 5990)
    with pytest.raises(AttributeError):
        paid.order_id = "o-8"  # type: ignore[misc]
    assert paid == OrderPaid("o-7", "m-3", T0, 5990)
