"""The streaming worker: the faust app, per-record handling, per-partition runtimes, the outbox
and commit hook of exactly-once, catch-up safety, the side clients, the local store, the
Kafka admin adapter and the settings.
"""
