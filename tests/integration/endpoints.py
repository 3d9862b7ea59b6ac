"""Where the local stack listens (`deploy/local/stack env`), overridable by environment."""

from __future__ import annotations

import os

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
