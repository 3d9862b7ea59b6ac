"""Garbage-collector thresholds for long runs whose state is acyclic and only grows.

With CPython's (700, 10, 10) a young collection runs every few hundred allocations and finds
nothing to free. Measured:
- the worker (bench/stream.py (a), paired runs): records waiting between faust's fetcher and
  the agent were promoted to the old generation, and full collections of 70-200 ms that found
  nothing ran every 1-2 s; the simulated mix went 11.7-11.9k -> 13.0k events/s, requests
  12.8-13.6k -> 13.6-15.9k;
- replay (1,000,000 events): collections cost 5-8% of the run.
"""

from __future__ import annotations

from typing import Final

GC_THRESHOLDS: Final = (100_000, 20, 10)
