"""The wire contract, machine-readable and pure: topic names and definitions, the JSON Schemas
compiled into validators, input decoding, dead-letter records and the wire's time formats.

Imports nothing from faust, aiokafka, redis or prometheus_client (tests/unit/test_layout.py).
"""
