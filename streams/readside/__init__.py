"""The read side: the worker's status feed projected into Redis, and an HTTP API over it.

    projection.py   pure: a status record applied to an order's view, merchant counts,
                    refund-rate windows and the ranking (the one place this logic lives)
    redis_store.py  the projection in Redis: batches applied exactly once, and the API's reads
    projector.py    `aftersale project`: consumes `<app id>-status`, applies it to Redis
    api.py          `aftersale api`: GET orders, cases, refund rates (deploy/openapi.yaml)
    settings.py     AFTERSALE_REDIS_URL and the other read-side settings
    commands.py     the two commands' arguments (the command line imports only this)

**The feed.** The worker writes `streams/rules/status.py`'s records, keyed by order_id, to
`<app id>-status` in the transaction of the state change, so a read_committed consumer sees
each once, in order per order. They are changes, not snapshots: `order_paid`, `case` (the case
after a transition or auto-action), `order_forgotten`.

**The view.** Per order: its merchant, paid (when, amount), refunded, and its cases in the
order they were opened; per case: kind, reason, amount, currency, phase, the deadline (rule,
deadline_at, paused, remaining_s while paused: a paused record names no rule, so the rule is
the one that ran before the pause), outcome, refund cause, and its history of transitions and
auto-actions (what, at, phase after, fired_at for auto-actions; the last 100 are kept,
`history_dropped` counts older ones). Per merchant and UTC business day (the day of the
record's `at`): orders paid (each `order_paid`) and orders refunded (each `first_refund`), so
the counts match replay's summary. A window of N days ends with a given day; its refund rate
is refunded / paid over those days (null with no paid order; a refund counts on its own day,
so the rate of a short window can exceed 1). The ranking takes merchants with at least
`AFTERSALE_RATE_MIN_PAID` (20) paid orders in the window: highest rate first (compared as
exact fractions), then more paid orders, then merchant id.

**order_forgotten** drops the order's view (its cases and history): the worker has deleted the
order, and a later record of the same order_id starts a new order there, so it starts a new
view here too (keeping the old one would merge two orders). Merchant counts are kept: the
order was paid (and maybe refunded) on those days whatever happens to its state later.

**Redis keys** (prefix `<app id>:`): `order:<order_id>` a hash, `meta` and `case:<case_id>`
as JSON (a change rewrites the order's meta and the one case, not the whole order);
`merchant:<merchant_id>` a hash of daily counters `paid:<day>` / `refunded:<day>`;
`paid:<day>` / `refunded:<day>` sorted sets of merchants scored by that day's count, the
ranking's index; `offset:<topic>:<partition>` the last offset applied. A rate is one HMGET of
the window's counters. The ranking is one read-only Lua script: ZUNION of the window's day
sets, the merchants with enough paid orders and their refunds, then sorted in Python by
`projection.rank`. Its cost is the merchant-days of the window (bounded by
`AFTERSALE_RATE_MAX_WINDOW_DAYS`, 90). A rate-scored sorted set kept up to date by the
projector was not used: every merchant's rate changes when a day leaves the window, with no
record to trigger an update, and the API answers for any end day. Redis Cluster is not
supported (a batch's script spans many keys).

**Exactly once.** A batch of records (up to `AFTERSALE_PROJECTOR_BATCH`) costs two round
trips to Redis: a read-only Lua script returns the stored offsets of the batch's partitions and
the stored fields its records touch; `projection.plan_batch` applies the records past those
offsets (records at or before them were applied before: skipped); a second Lua script, atomic
like every script, checks that the offsets are still the ones read and only then writes the
orders, the counts and the new offsets together (a compare and set; if another projector, the
partition's owner before a rebalance, moved one meanwhile, nothing is written and the batch is
decided again on what it stored). The scripts carry no domain logic: one reads given fields,
the other executes given writes. The projector resumes each partition it is given from the
offset stored in Redis, never from Kafka's committed offsets, so a record redelivered after
kill -9 or a rebalance is never applied twice and none is missed. If Redis comes back with an
offset behind what this projector applied (restarted from an older snapshot: that data and
offset were lost together), the partition is read again from there. The write script checks
every key's type before its first write, and Redis refuses a script that would write while out
of memory before it starts, so a failing batch writes nothing.

**Redis down.** The projector keeps the batch in hand and retries it (0.1 s, doubling, at most
`AFTERSALE_PROJECTOR_RETRY_MAX`), logging when the outage starts, every 30 s while it lasts and
when it ends; it never skips a record and never leaves its loop, and catches up afterwards.
Kafka may move its partitions meanwhile (aiokafka leaves the group after 5 minutes without a
poll); that is safe as above. The API answers 503 `redis_unavailable` (and /readyz 503) while
/healthz stays 200.

**Known gaps.** Order views stay in Redis until their `order_forgotten` (so only with the
policy's `order_retention`), and the daily counters and day sets are kept forever (about a
field per merchant and day); nothing expires them yet. The ranking's cost grows with the
merchants active in the window (one script, run inside Redis, blocks it meanwhile). A record
that is not a status record is logged (ERROR, with its partition and offset) and skipped.
"""
