"""The fault campaign's driver (issue 20).

    python -m tests.chaos.campaign --faults 50 --workers 2 [--seed S] [--keep] [--stack-down]

1. Its own broker (`deploy/local/stack up` with STACK_DIR=.stack-chaos, ports 29092/29093 and
   Redis 26379), the contract topics under a fresh prefix (6 partitions, LogAppendTime inputs).
2. One or two `aftersale worker` processes (static membership: each its instance id, kept
   across restarts; a 6 s session), supervised: a worker that exits on its own is restarted
   and counted.
3. A stream from `aftersale simulate` (short deadlines: --time-scale 28800 makes
   merchant_review 6 s; bad records and producer retries at simulate's default rates),
   produced on the wall clock, a third of the orders through librdkafka (CRC32 partitioner),
   the rest through aiokafka (murmur2).
4. Meanwhile, one fault every few seconds, chosen with the seed (the first four cover every
   kind): kill -9 of a worker restarted at once; kill -9 of a worker restarted after a few
   seconds; SIGSTOP of a worker for 2-6 s then SIGCONT; kill -9 of the broker, restarted
   (`stack up`). After each, the driver waits until the cluster is whole again (every worker
   ready, the group stable with every worker holding partitions): the fault is survived.
5. Once every deadline the input can start has passed and the outputs stop changing: the
   input topics read back with their append times, merged in append order, replayed
   (`aftersale replay`), and the committed outputs (read_committed) judged against replay's
   (`judge.py`: lost, duplicated, early, raced, unexplained).

Exit 0 only if every check passes. The run's folder (.stack-chaos/runs/<prefix>) keeps the
worker logs, the input, replay's output and summary.json; it is deleted after a run that
passed, and kept after one that failed (and with --keep, as are the topics).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.structs import TopicPartition

from streams.contract.times import format_time, parse_time
from streams.live.admin import delete_topics_named
from streams.live.partitioning import partition_of
from streams.rules.policy import load_policy
from tests.chaos.judge import (
    AFTERSALE_EVENTS,
    ORDER_EVENTS,
    InputRecord,
    Outputs,
    Verdict,
    append_order,
    judge,
)
from tests.chaos.producers import MixedProducers, Produced
from tests.chaos.stack import ChaosStack
from tests.chaos.workers import AFTERSALE, Supervisor, Worker
from tests.repo import ROOT

PARTITIONS = 6
INPUTS = (ORDER_EVENTS, AFTERSALE_EVENTS)
OUTPUTS = ("aftersale-actions", "aftersale-notifications", "aftersale-deadletter")
LOG_APPEND_TIME = 1  # a record's timestamp type: the broker's append time

KILL_NOW = "kill -9 worker, restart at once"
KILL_LATER = "kill -9 worker, restart later"
PAUSE = "SIGSTOP worker, SIGCONT"
BROKER = "kill -9 broker, restart"
KINDS = (KILL_NOW, KILL_LATER, PAUSE, BROKER)
#: Short names of the kinds, for --kinds.
SHORT = {"kill-now": KILL_NOW, "kill-later": KILL_LATER, "pause": PAUSE, "broker": BROKER}


@dataclass
class Config:
    faults: int = 50
    workers: int = 2
    seed: int = 1
    #: The kinds of fault to inject (every one at least once when there are enough faults).
    kinds: tuple[str, ...] = KINDS
    keep: bool = False
    #: Stop the campaign's broker at the end (`make chaos`, the e2e test).
    stack_down: bool = False
    time_scale: float = 28800.0  # merchant_review 6 s, buyer_return and merchant_receipt 30 s
    #: Wall-clock seconds over which orders are paid (the stream runs about a minute longer);
    #: None: long enough for the faults (about 15 s each, their recovery included).
    span_s: float | None = None
    orders_per_s: float = 3.0
    #: Seconds between one fault's recovery and the next fault.
    interval_s: tuple[float, float] = (4.0, 8.0)
    pause_s: tuple[float, float] = (2.0, 6.0)
    restart_delay_s: tuple[float, float] = (3.0, 10.0)
    session_timeout_s: float = 6.0
    #: Seconds from the stream's first record to the first fault.
    first_fault_s: float = 4.0
    recovery_timeout_s: float = 120.0
    #: The outputs have stopped changing when nothing new came for this long.
    settle_s: float = 6.0
    folder: Path | None = None
    say: Callable[[str], None] = print

    @property
    def span(self) -> float:
        return self.span_s if self.span_s is not None else max(30.0, self.faults * 15.0)

    @property
    def orders(self) -> int:
        return max(20, round(self.span * self.orders_per_s))


@dataclass
class Fault:
    n: int
    kind: str
    target: str
    at: datetime
    #: How long the target was down (killed until restarted, paused, broker gone until up).
    down_s: float = 0.0
    #: From the fault to the cluster being whole again (None: not within the timeout).
    recovered_s: float | None = None
    #: A killed worker's partitions (from its /router/ page) at the kill.
    partitions: list[int] | None = None
    #: From the kill to the first action fired after it whose deadline fell due during the
    #: outage (between the kill and the recovery), on the killed worker's partitions.
    first_fire_s: float | None = None
    first_fire_note: str = ""

    @property
    def survived(self) -> bool:
        return self.recovered_s is not None


@dataclass
class Result:
    config: dict[str, Any]
    prefix: str
    folder: Path
    faults: list[Fault] = field(default_factory=list)
    restarts_after_crash: int = 0
    crash_exits: list[str] = field(default_factory=list)
    lines: int = 0
    produced: Produced | None = None
    input_records: Counter[str] = field(default_factory=Counter)
    misplaced: int = 0  # input records not on murmur2's partition (rerouted by the worker)
    not_log_append_time: int = 0
    until: datetime | None = None
    verdict: Verdict | None = None
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: The worker code that ran: the checkout's commit, and whether streams/ had changes.
    code: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures


def _now() -> datetime:
    return datetime.now(UTC)


class Campaign:
    def __init__(self, config: Config) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.stack = ChaosStack()
        stamp = _now().strftime("%Y%m%d%H%M%S")
        self.prefix = f"chaos-{stamp}-{config.seed}-"
        self.app_id = f"{self.prefix}app"
        runs = self.stack.folder / "runs"
        self.folder = config.folder or runs / self.prefix.rstrip("-")
        self.result = Result(asdict_config(config), self.prefix, self.folder)
        self.workers: list[Worker] = []
        self.supervisor: Supervisor | None = None
        self.started = time.monotonic()

    # ------------------------------------------------------------------ output

    def say(self, text: str) -> None:
        self.cfg.say(f"[{time.monotonic() - self.started:7.1f}s] {text}")

    # ------------------------------------------------------------------ the run

    async def run(self) -> Result:
        cfg = self.cfg
        self.folder.mkdir(parents=True, exist_ok=True)
        level = logging.getLogger().level
        handler = _log_to(self.folder / "driver.log")
        supervising: asyncio.Task[None] | None = None
        producing: asyncio.Task[Produced] | None = None
        try:
            self.say(f"chaos stack: {self.stack.folder} on {self.stack.bootstrap}")
            await self.stack.up()
            self.result.code = await code_version()
            self.say(f"run {self.prefix} in {self.folder}; worker code {self.result.code}")
            await self.cli("topics", "create", "--prefix", self.prefix, "--partitions",
                           str(PARTITIONS), "--bootstrap", self.stack.bootstrap)  # fmt: skip
            policy_file = self.folder / "policy.yaml"
            await self.cli("simulate", "--orders", "0", "--time-scale", str(cfg.time_scale),
                           "--policy-out", str(policy_file), "--out", os.devnull)  # fmt: skip
            policy = load_policy(policy_file)
            self.workers = [self.worker(f"w{i + 1}", policy_file) for i in range(cfg.workers)]
            for worker in self.workers:
                worker.start()
            self.supervisor = Supervisor(self.workers, self.say)
            supervising = asyncio.create_task(self.supervisor.run())
            took = await self.until_whole(cfg.recovery_timeout_s)
            if took is None:
                raise RuntimeError(f"the workers never formed a group:\n{self.tails()}")
            self.say(f"{cfg.workers} worker(s) ready ({took:.1f} s)")

            lines = await self.generate(policy_file)
            self.result.lines = len(lines)
            producers = MixedProducers(self.stack.bootstrap, self.prefix)
            producing = asyncio.create_task(producers.run(lines))
            await asyncio.sleep(cfg.first_fault_s + 3)
            await self.inject_faults()
            self.say("faults done; waiting for the producers")
            self.result.produced = await producing
            produced = self.result.produced
            self.say(
                f"produced {sum(produced.sent.values())} records "
                f"({dict(produced.sent)}; at most {produced.behind_s:.1f} s behind occurred_at)"
            )
            records = await self.read_inputs()
            review = policy.deadlines["merchant_review"]
            longest = max(policy.deadlines["buyer_return"], policy.deadlines["merchant_receipt"])
            last = max(r.appended for r in records)
            until = last + review + longest + timedelta(seconds=1)
            self.result.until = until
            wait = (until - _now()).total_seconds() + 2
            self.say(f"every deadline is due by {format_time(until)}: waiting {wait:.0f} s")
            await asyncio.sleep(max(0.0, wait))
            took = await self.until_whole(cfg.recovery_timeout_s)
            if took is None:
                self.result.failures.append("the cluster was not whole at the end")
            actual = await self.read_outputs()
            self.say(f"outputs settled: {actual.counts()}")
            expected = await self.replay(records, policy_file, until)
            self.say(f"replay of the input in append order: {expected.counts()}")
            verdict = judge(records, expected, actual)
            self.result.verdict = verdict
            self.keep_evidence(actual, verdict)
            self.first_fires(actual)
            self.check(records)
        except Exception as exc:
            self.result.failures.append(f"campaign error: {exc!r}")
            logging.getLogger("chaos").exception("campaign error")
            raise
        finally:
            for task in (supervising, producing):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            await asyncio.to_thread(self.stop_workers)
            if self.supervisor is not None:
                self.result.restarts_after_crash = len(self.supervisor.exits)
                self.result.crash_exits = [
                    f"{e.worker} at {datetime.fromtimestamp(e.at, UTC):%H:%M:%S} code {e.code} "
                    f"({e.log.name})"
                    for e in self.supervisor.exits
                ]
            self.result.seconds = time.monotonic() - self.started
            (self.folder / "summary.txt").write_text(summary(self.result))
            await self.clean_up()
            root = logging.getLogger()
            root.removeHandler(handler)
            root.setLevel(level)
            handler.close()
        return self.result

    def worker(self, name: str, policy_file: Path) -> Worker:
        folder = self.folder / name
        folder.mkdir(exist_ok=True)
        env = {
            "AFTERSALE_KAFKA_BOOTSTRAP": self.stack.bootstrap,
            "AFTERSALE_TOPIC_PREFIX": self.prefix,
            "AFTERSALE_APP_ID": self.app_id,
            "AFTERSALE_PARTITIONS": str(PARTITIONS),
            "AFTERSALE_POLICY_FILE": str(policy_file),
            "AFTERSALE_DATA_DIR": str(folder / "data"),
            "AFTERSALE_TICK_INTERVAL": "0.1",
            "AFTERSALE_INSTANCE_ID": f"{self.app_id}-{name}",
            "AFTERSALE_SESSION_TIMEOUT": f"{self.cfg.session_timeout_s:g}",
        }
        return Worker(name, env, folder)

    async def cli(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            str(AFTERSALE),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        text = out.decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"aftersale {' '.join(args)} exited {process.returncode}:\n{text}")
        return text

    async def generate(self, policy_file: Path) -> list[bytes]:
        cfg = self.cfg
        start = _now() + timedelta(seconds=3)
        path = self.folder / "simulated.jsonl"
        await self.cli(
            "simulate", "--orders", str(cfg.orders), "--seed", str(cfg.seed),
            "--time-scale", f"{cfg.time_scale:g}", "--span", f"{cfg.span * cfg.time_scale:g}",
            "--start", format_time(start), "--policy", str(policy_file), "--out", str(path),
        )  # fmt: skip
        lines = path.read_bytes().splitlines()
        self.say(
            f"stream: {cfg.orders} orders paid over {cfg.span:g} s from {format_time(start)}, "
            f"{len(lines)} records (seed {cfg.seed}, time scale {cfg.time_scale:g})"
        )
        return lines

    # ------------------------------------------------------------------ faults

    def plan(self) -> list[str]:
        """The kinds of the faults: every kind once (in a seeded order), then at random."""
        kinds = list(self.cfg.kinds)
        self.rng.shuffle(kinds)
        while len(kinds) < self.cfg.faults:
            kinds.append(self.rng.choice(self.cfg.kinds))
        return kinds[: self.cfg.faults]

    async def inject_faults(self) -> None:
        cfg = self.cfg
        for n, kind in enumerate(self.plan(), 1):
            if n > 1:
                await asyncio.sleep(self.rng.uniform(*cfg.interval_s))
            await self.until_all_running()
            fault = await self.inject(n, kind)
            self.result.faults.append(fault)
            fault.recovered_s = await self.until_whole(cfg.recovery_timeout_s, since=fault.at)
            state = "NOT RECOVERED" if fault.recovered_s is None else (
                f"whole again after {fault.recovered_s:.1f} s"
            )  # fmt: skip
            self.say(
                f"fault {n}/{cfg.faults} at {fault.at:%H:%M:%S.%f}"[:-3]
                + f": {kind} ({fault.target}, down {fault.down_s:.1f} s): {state}"
            )

    async def inject(self, n: int, kind: str) -> Fault:
        cfg = self.cfg
        if kind == BROKER:
            fault = Fault(n, kind, "broker", _now())
            began = time.monotonic()
            await self.stack.kill_broker()
            for attempt in range(3):
                try:
                    await self.stack.up()
                    break
                except Exception as exc:
                    self.say(f"stack up failed (attempt {attempt + 1}): {exc}")
                    await asyncio.sleep(2)
            fault.down_s = time.monotonic() - began
            return fault
        worker = self.rng.choice(self.workers)
        partitions = await self.partitions_of(worker)
        fault = Fault(n, kind, worker.name, _now(), partitions=partitions)
        began = time.monotonic()
        if kind == PAUSE:
            worker.signal(signal.SIGSTOP)
            await asyncio.sleep(self.rng.uniform(*cfg.pause_s))
            worker.signal(signal.SIGCONT)
        else:
            worker.held_down = True
            try:
                worker.signal(signal.SIGKILL)
                await worker.wait_exit()
                if kind == KILL_LATER:
                    await asyncio.sleep(self.rng.uniform(*cfg.restart_delay_s))
                worker.start()
            finally:
                worker.held_down = False
        fault.down_s = time.monotonic() - began
        return fault

    async def partitions_of(self, worker: Worker) -> list[int] | None:
        """The partitions `worker` holds, as its faust router says (None: no answer)."""
        url = f"http://127.0.0.1:{worker.web_port}/router/"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(url) as response,
            ):
                routes: dict[str, dict[str, list[int]]] = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        mine = routes.get(f"http://{worker.env['AFTERSALE_INSTANCE_ID']}", {})
        return sorted({p for partitions in mine.values() for p in partitions})

    async def until_all_running(self, within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        while not all(w.running() and not w.held_down for w in self.workers):
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.1)

    async def until_whole(self, within: float, since: datetime | None = None) -> float | None:
        """Wait until the cluster is whole: every worker running and ready, the group stable
        with one member per worker, each holding partitions. Seconds since `since` (or since
        the call), or None after `within` s."""
        began = time.monotonic()
        origin = since or _now()
        while time.monotonic() - began < within:
            if all(w.running() and not w.held_down and w.ready() for w in self.workers):
                members = await self.group_members()
                if len(members) == len(self.workers) and all(members):
                    return (_now() - origin).total_seconds()
            await asyncio.sleep(0.25)
        return None

    async def group_members(self) -> list[int]:
        """Partitions held by each member of the worker group, if it is stable; else []."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.bootstrap, request_timeout_ms=3000)
        try:
            await asyncio.wait_for(admin.start(), 5)
            responses = await asyncio.wait_for(admin.describe_consumer_groups([self.app_id]), 5)
        except Exception:
            return []
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        held: list[int] = []
        for response in responses:
            for error, group, state, _ptype, _protocol, members, *_ in response.groups:
                if group != self.app_id or error != 0 or state != "Stable":
                    return []
                for _member, _client, _host, _metadata, assignment in members:
                    parts = (
                        ConsumerProtocolMemberAssignment.decode(assignment).partitions()
                        if assignment
                        else []
                    )
                    held.append(len(parts))
        return held

    def tails(self) -> str:
        return "".join(f"\n--- {w.log} ---\n{w.tail()}" for w in self.workers)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.held_down = True
            worker.stop()

    # ------------------------------------------------------------------ reading back

    async def read_inputs(self) -> list[InputRecord]:
        """Both input topics as the broker holds them, with their append times."""
        tps = [TopicPartition(self.prefix + t, p) for t in INPUTS for p in range(PARTITIONS)]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.stack.bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            request_timeout_ms=30_000,
        )
        await consumer.start()
        records: list[InputRecord] = []
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)

            async def behind() -> bool:
                for tp, end in ends.items():
                    if await consumer.position(tp) < end:
                        return True
                return False

            while await behind():
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, messages in batch.items():
                    topic = tp.topic.removeprefix(self.prefix)
                    for m in messages:
                        if m.timestamp_type != LOG_APPEND_TIME:
                            self.result.not_log_append_time += 1
                        key = m.key.decode(errors="replace") if m.key is not None else None
                        if key is not None and partition_of(key, PARTITIONS) != tp.partition:
                            self.result.misplaced += 1
                        records.append(
                            InputRecord(topic, tp.partition, m.offset, m.timestamp, m.value or b"")
                        )
        finally:
            await consumer.stop()
        self.result.input_records = Counter(r.topic for r in records)
        self.say(
            f"read back {len(records)} input records ({dict(self.result.input_records)}; "
            f"{self.result.misplaced} not on murmur2's partition)"
        )
        return records

    async def read_outputs(self) -> Outputs:
        """The committed output records, read until nothing new came for `settle_s`."""
        consumer = AIOKafkaConsumer(
            *(self.prefix + t for t in OUTPUTS),
            bootstrap_servers=self.stack.bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        await consumer.start()
        out = Outputs()
        lists = {"aftersale-actions": out.actions, "aftersale-notifications": out.reminders,
                 "aftersale-deadletter": out.dead_letters}  # fmt: skip
        try:
            quiet_since = time.monotonic()
            began = time.monotonic()
            while time.monotonic() - quiet_since < self.cfg.settle_s:
                if time.monotonic() - began > 300:
                    self.result.failures.append("the outputs never stopped changing")
                    break
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in batch.items():
                    for m in messages:
                        lists[tp.topic.removeprefix(self.prefix)].append(
                            orjson.loads(m.value or b"null")
                        )
                        quiet_since = time.monotonic()
        finally:
            await consumer.stop()
        return out

    async def replay(self, records: list[InputRecord], policy: Path, until: datetime) -> Outputs:
        """`aftersale replay` of the input in append order."""
        merged = self.folder / "input-in-append-order.jsonl"
        ordered = append_order(records)
        if any(b"\n" in r.value for r in ordered):
            self.result.failures.append("an input record holds a newline: replay cannot read it")
        merged.write_bytes(b"".join(r.value + b"\n" for r in ordered))
        # where each line came from (the topics are deleted after the run)
        (self.folder / "input-in-append-order.where.jsonl").write_bytes(
            b"".join(
                orjson.dumps(
                    {
                        "topic": r.topic,
                        "partition": r.partition,
                        "offset": r.offset,
                        "appended": format_time(r.appended),
                    }
                )
                + b"\n"
                for r in ordered
            )
        )
        out = self.folder / "replay"
        await self.cli("replay", str(merged), "--policy", str(policy), "--until",
                       format_time(until), "--out", str(out), "--quiet")  # fmt: skip

        def read(name: str) -> list[dict[str, Any]]:
            return [orjson.loads(line) for line in (out / name).read_bytes().splitlines()]

        return Outputs(read("actions.jsonl"), read("notifications.jsonl"), read("deadletter.jsonl"))

    # ------------------------------------------------------------------ verdict

    def keep_evidence(self, actual: Outputs, verdict: Verdict) -> None:
        """The committed outputs (the topics are deleted after the run) and every difference,
        in the run's folder."""
        out = self.folder / "actual"
        out.mkdir(exist_ok=True)
        for name, records in (("actions", actual.actions), ("notifications", actual.reminders),
                              ("deadletter", actual.dead_letters)):  # fmt: skip
            (out / f"{name}.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        lines: list[dict[str, object]] = []
        for verdict_of, diffs in (("raced", verdict.raced_differences),
                                  ("unexplained", verdict.unexplained)):  # fmt: skip
            for d in diffs:
                evidence = verdict.raced.get(d.case, []) if d.case else []
                lines.append({"verdict": verdict_of, "what": d.what, "item": d.item,
                              "case": d.case, "evidence": evidence})  # fmt: skip
        lines += [
            {"verdict": "duplicated", "item": k, "count": n} for k, n in verdict.duplicated.items()
        ]
        lines += [{"verdict": "early", "item": list(e)} for e in verdict.early]
        (self.folder / "differences.jsonl").write_bytes(
            b"".join(orjson.dumps(line) + b"\n" for line in lines)
        )

    def first_fires(self, actual: Outputs) -> None:
        """Crash-to-first-fire of each kill -9 (of a worker: on the partitions it held; of the
        broker: on any): from the kill to the first action fired after it whose deadline fell
        due during the outage, i.e. between the kill and the cluster being whole again."""
        fired = sorted(
            (parse_time(a["fired_at"]), parse_time(a["deadline_at"]), a) for a in actual.actions
        )
        for fault in self.result.faults:
            if fault.kind not in (KILL_NOW, KILL_LATER, BROKER) or fault.recovered_s is None:
                continue
            whole = fault.at + timedelta(seconds=fault.recovered_s)
            mine = set(fault.partitions) if fault.partitions else set(range(PARTITIONS))
            due = [
                (at, deadline, a)
                for at, deadline, a in fired
                if fault.at <= deadline <= whole and partition_of(a["order_id"], PARTITIONS) in mine
            ]
            if not due:
                fault.first_fire_note = "nothing fell due before the cluster was whole again"
                continue
            at, deadline, action = due[0]
            fault.first_fire_s = (at - fault.at).total_seconds()
            fault.first_fire_note = (
                f"{action['action_id']}, due {(deadline - fault.at).total_seconds():.1f} s after "
                f"the kill"
            )

    def check(self, records: list[InputRecord]) -> None:
        result, cfg = self.result, self.cfg
        failures = result.failures
        if len(result.faults) < cfg.faults:
            failures.append(f"only {len(result.faults)} of {cfg.faults} faults injected")
        lost = [f for f in result.faults if not f.survived]
        if lost:
            failures.append(f"{len(lost)} fault(s) not survived: {[f.n for f in lost]}")
        produced = result.produced
        if produced is None or produced.failed:
            failures.append(f"producers failed: {produced.failed[:5] if produced else 'none ran'}")
        elif sum(produced.delivered.values()) != result.lines:
            failures.append(f"delivered {dict(produced.delivered)} of {result.lines} records")
        if len(records) < result.lines:
            failures.append(f"only {len(records)} of {result.lines} records in the input topics")
        if result.not_log_append_time:
            failures.append(f"{result.not_log_append_time} input records not LogAppendTime")
        verdict = result.verdict
        assert verdict is not None
        if not verdict.expected.actions:
            failures.append("replay expects no action: the workload tested nothing")
        if verdict.unexplained:
            failures.append(f"{len(verdict.unexplained)} unexplained difference(s)")
        if verdict.duplicated:
            failures.append(f"{len(verdict.duplicated)} duplicated output(s)")
        if verdict.early:
            failures.append(f"{len(verdict.early)} early action(s)")

    # ------------------------------------------------------------------ clean-up

    async def clean_up(self) -> None:
        keep = self.cfg.keep
        if not keep:
            try:
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self.stack.bootstrap, request_timeout_ms=15_000
                )
                await admin.start()
                try:
                    deleted = await delete_topics_named(admin, self.prefix)
                finally:
                    await admin.close()
                self.say(f"deleted {len(deleted)} topics {self.prefix}*")
            except Exception as exc:
                self.say(f"could not delete the topics {self.prefix}*: {exc!r}")
            for worker in self.workers:
                shutil.rmtree(worker.folder / "data", ignore_errors=True)
            if self.result.passed and self.cfg.folder is None:
                shutil.rmtree(self.folder, ignore_errors=True)
            else:
                self.say(f"kept {self.folder} (logs, input, replay, summary)")
        else:
            self.say(f"kept topics {self.prefix}* and {self.folder}")
        if self.cfg.stack_down:
            with contextlib.suppress(Exception):
                await self.stack.down()
            self.say("chaos stack stopped")


async def code_version() -> str:
    """The checkout's commit, and whether streams/ differs from it."""

    async def git(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "git", "-C", str(ROOT), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await process.communicate()
        return out.decode().strip()

    commit = await git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = await git("status", "--porcelain", "--", "streams")
    return f"{commit}{' + uncommitted changes in streams/' if dirty else ''}"


def asdict_config(config: Config) -> dict[str, Any]:
    values = {k: v for k, v in asdict(config).items() if k not in ("say", "folder")}
    values.update(span_s=config.span, orders=config.orders)
    return values


def _log_to(path: Path) -> logging.Handler:
    """The driver's own log (and the clients': aiokafka, librdkafka) to a file, not the
    console: a broker restart makes them say a lot."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


# ---------------------------------------------------------------------- summary


def summary(result: Result) -> str:
    lines: list[str] = []
    add = lines.append
    cfg = result.config
    add(f"== chaos campaign {result.prefix} ({result.seconds:.0f} s): "
        f"{'PASSED' if result.passed else 'FAILED'}")  # fmt: skip
    add(f"workers {cfg['workers']}, seed {cfg['seed']}, {cfg['orders']} orders over "
        f"{cfg['span_s']:g} s, time scale {cfg['time_scale']:g}")  # fmt: skip
    add(f"worker code: {result.code}")
    kinds = Counter(f.kind for f in result.faults)
    survived = Counter(f.kind for f in result.faults if f.survived)
    add(f"faults injected {len(result.faults)}, survived {sum(survived.values())}")
    for kind in KINDS:
        add(f"  {kind:36} {kinds[kind]:3} injected, {survived[kind]:3} survived")
    recovered = [f.recovered_s for f in result.faults if f.recovered_s is not None]
    if recovered:
        add(f"  whole again after: median {_median(recovered):.1f} s, max {max(recovered):.1f} s")
    add(f"workers restarted after exiting on their own: {result.restarts_after_crash}")
    for text in result.crash_exits:
        add(f"  {text}")
    produced = result.produced
    if produced is not None:
        add(
            f"input: {result.lines} records simulated; sent {dict(produced.sent)}, delivered "
            f"{dict(produced.delivered)}, failed {len(produced.failed)}; orders by producer "
            f"{ {k: len(v) for k, v in produced.orders.items()} }"
        )
    add(
        f"input topics: {sum(result.input_records.values())} records "
        f"{dict(result.input_records)}; {result.misplaced} placed off murmur2's partition"
    )
    verdict = result.verdict
    if verdict is not None:
        e, a = verdict.expected, verdict.actual
        add(f"expected (replay in append order): {e.counts()}")
        add(f"actual (read_committed):           {a.counts()}")
        by = Counter(d.what for d in (*verdict.lost, *verdict.extra))
        add(
            f"lost {len(verdict.lost)}, extra {len(verdict.extra)}, duplicated "
            f"{len(verdict.duplicated)}, early {len(verdict.early)}, raced "
            f"{len(verdict.raced_differences)} (in {len(verdict.raced)} cases), unexplained "
            f"{len(verdict.unexplained)}" + (f"  [{dict(by)}]" if by else "")
        )
        for case, evidence in sorted(verdict.raced.items()):
            diffs = [d for d in verdict.raced_differences if d.case == case]
            what = "; ".join(f"{d.what} {d.item}" for d in diffs)
            add(f"  raced {case[1]} (order {case[0]}): {what}")
            for line in evidence[:4]:
                add(f"      {line}")
        shown: set[tuple[str, str]] = set()
        for diff in verdict.unexplained[:60]:
            add(f"  UNEXPLAINED {diff.what}: {diff.item} (case {diff.case})")
            if diff.case is not None and diff.case not in shown:
                shown.add(diff.case)
                for r in verdict.case_records.get(diff.case, [])[:8]:
                    add(f"      {r.describe()}")
        for item, n in list(verdict.duplicated.items())[:20]:
            add(f"  DUPLICATED {item} x{n}")
        for action_id, deadline, fired in verdict.early[:20]:
            add(f"  EARLY {action_id}: deadline {deadline}, fired {fired}")
    if result.faults:
        add("faults (when, what, down for, whole again after; for a kill -9, crash-to-first-fire:")
        add("from the kill to the first action fired after it whose deadline fell due during the")
        add("outage, on the killed worker's partitions, or any for the broker):")
    for f in result.faults:
        whole = f"{f.recovered_s:4.1f} s" if f.recovered_s is not None else "NEVER"
        line = f"  {f.n:2} {f.at:%H:%M:%S} {f.kind:32} {f.target:6} down {f.down_s:4.1f} s, "
        line += f"whole {whole}"
        if f.kind in (KILL_NOW, KILL_LATER, BROKER):
            fire = f"{f.first_fire_s:.1f} s" if f.first_fire_s is not None else "-"
            where = f" {f.partitions}" if f.partitions and f.kind != BROKER else ""
            line += f"; first fire{where} {fire} ({f.first_fire_note})"
        add(line)
    groups: tuple[tuple[tuple[str, ...], str], ...] = (
        ((KILL_NOW, KILL_LATER), "kill -9 of a worker"),
        ((BROKER,), "kill -9 of the broker"),
    )
    for of_kinds, label in groups:
        fires = [f.first_fire_s for f in result.faults if f.kind in of_kinds and f.first_fire_s]
        if fires:
            add(
                f"crash-to-first-fire after a {label}: median {_median(fires):.1f} s, max "
                f"{max(fires):.1f} s ({len(fires)} with a deadline due during the outage)"
            )
    for failure in result.failures:
        add(f"FAILED: {failure}")
    return "\n".join(lines) + "\n"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def run_campaign(config: Config) -> Result:
    """Run one campaign; its result says whether it passed (and the summary why)."""
    return await Campaign(config).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.campaign", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--faults", type=int, default=50, help="faults to inject (default 50)")
    parser.add_argument("--workers", type=int, choices=(1, 2), default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--kinds",
        default=",".join(SHORT),
        help=f"comma-separated kinds of fault (default all: {','.join(SHORT)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's topics and folder")
    parser.add_argument("--stack-down", action="store_true", help="stop the chaos broker after")
    parser.add_argument("--span", type=float, help="seconds over which orders are paid")
    parser.add_argument("--orders-per-second", type=float, default=3.0)
    parser.add_argument("--time-scale", type=float, default=28800.0)
    args = parser.parse_args(argv)
    if args.faults < 1:
        parser.error("--faults must be at least 1")
    named = [name for name in args.kinds.split(",") if name]
    unknown = [name for name in named if name not in SHORT]
    if unknown or not named:
        parser.error(f"--kinds: unknown {','.join(unknown) or '(none)'}; known: {','.join(SHORT)}")
    config = Config(
        faults=args.faults,
        workers=args.workers,
        seed=args.seed,
        kinds=tuple(SHORT[name] for name in dict.fromkeys(named)),
        keep=args.keep,
        stack_down=args.stack_down,
        span_s=args.span,
        orders_per_s=args.orders_per_second,
        time_scale=args.time_scale,
        say=lambda text: print(text, flush=True),
    )
    try:
        result = asyncio.run(run_campaign(config))
    except Exception as exc:
        print(f"chaos: the campaign could not run: {exc}", file=sys.stderr)
        return 2
    print(summary(result), end="", flush=True)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
