"""Paths of the repository that tests read (its README, the contract, the sample)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TOPICS = ROOT / "topics"
#: The repository's copy of the wire contract (.ci/run says when it differs from ../shared/).
CONTRACT_PAGE = TOPICS / "contract.md"
SAMPLE = ROOT / "deploy" / "local" / "sample" / "events.jsonl"
