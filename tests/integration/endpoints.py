"""Where the local stack listens (`deploy/local/stack env`), overridable by environment."""

from __future__ import annotations

import os

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
#: The broker's SASL_SSL listener (SCRAM-SHA-512, TLS with the stack's own certificate).
SASL_BOOTSTRAP = os.environ.get("KAFKA_SASL_BOOTSTRAP", "127.0.0.1:9094")
SASL_USER = os.environ.get("KAFKA_SASL_USER", "aftersale")
SASL_PASSWORD = os.environ.get("KAFKA_SASL_PASSWORD", "aftersale-local-secret")
CA_FILE = os.environ.get(
    "KAFKA_CA_FILE",
    os.path.join(os.path.dirname(__file__), "..", "..", ".stack", "tls", "ca.pem"),
)
