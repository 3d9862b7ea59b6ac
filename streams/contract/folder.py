"""Where the contract's files (`topics/`: schemas, topic definitions, AsyncAPI) are read from.

In a checkout they are the top-level `topics/` folder, the human-facing contract. A built
wheel carries the same folder as package data, `streams/contract/files/` (pyproject.toml
maps it), so an installed package needs no checkout beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def topics_dir() -> Path:
    """The contract folder: `$AFTERSALE_TOPICS_DIR`, else the packaged copy, else the checkout's."""
    override = os.environ.get("AFTERSALE_TOPICS_DIR")
    if override:
        return Path(override)
    packaged = _HERE / "files"
    if packaged.is_dir():
        return packaged
    return _HERE.parent.parent / "topics"
