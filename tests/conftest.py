"""Fixtures shared by every test folder."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def unique() -> str:
    """A name no other test (or earlier run) uses: for topics, groups and app ids."""
    return f"t-{uuid.uuid4().hex[:12]}"
