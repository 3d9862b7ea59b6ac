"""The after-sale rules, pure: the policy, case and order state machines, the deadline engine
with its due index, the effects it asks for, the state's byte codec and the clock.

Depends on `streams.contract` and `streams.errors` only; imports nothing from faust, aiokafka,
redis or prometheus_client (tests/unit/test_layout.py).
"""
