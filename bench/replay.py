"""Throughput of `aftersale replay` next to merely parsing the same file, in the same run.

    python bench/replay.py [--events 1000000] [--jobs N]

Builds (once, cached under bench/data/) a simulated file of about --events records, then runs,
each in a fresh process on one core: (1) read + parse every line, once with each of the
project's JSON libraries (orjson; msgspec, which decodes input events), (2) a floor: what any
replay in Python must do at least, with no rules (decode each line into its event type's
Struct, read its order's state, record the event id, write the state back), (3) the full replay
into a temporary folder. Prints events/s, the ratios of the floor and of the replay to the
faster parse, and peak memory (RSS). Then (4) `replay --jobs N` (default: the cores), on every
core, its rate next to the one-core replay's, and whether its files are byte for byte the
one-core replay's (exit 1 if not).
Targets (issue #2): >= 150,000 events/s, <= 4x the parse-only time; (issue #21) --jobs 2 >= 1.8x
the one-core rate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
UNTIL = "2027-06-01T00:00:00Z"
EVENTS_PER_ORDER = 4.35  # measured average of `aftersale simulate` with the default mix


def _phase(kind: str, path: Path, out: Path | None, jobs: int) -> None:
    """Run one measured phase in this process and print its figures as JSON.

    Modules are imported before the clock starts, in both phases: only the work is timed.
    """
    import msgspec
    import orjson

    from streams.contract.event_structs import compile_event_types, union_decoder
    from streams.contract.schemas import contract
    from streams.contract.times import parse_time
    from streams.rules.orders import OrderState
    from streams.rules.policy import Policy
    from streams.tools.replay import replay
    from streams.tools.replay_jobs import replay_jobs

    # compiled before the clock starts, and only for the phase that uses it
    typed = union_decoder(compile_event_types(contract())) if kind == "floor" else None

    start = time.perf_counter()
    if kind in ("orjson", "msgspec"):
        loads, error = (
            (orjson.loads, orjson.JSONDecodeError)
            if kind == "orjson"
            else (msgspec.json.decode, msgspec.DecodeError)
        )
        count = 0
        with path.open("rb") as source:
            for line in source:
                if line.strip():
                    count += 1
                    try:  # noqa: SIM105 - suppress() would slow the baseline down
                        loads(line)
                    except error:
                        pass
    elif kind == "floor":
        assert typed is not None
        count = 0
        store: dict[str, OrderState] = {}
        with path.open("rb") as source:
            for line in source:
                if line.strip():
                    count += 1
                    try:
                        body = typed.decode(line)
                    except msgspec.DecodeError:
                        continue
                    order_id = body.order_id
                    state = store.get(order_id)
                    if state is None:
                        state = OrderState(order_id)
                    state.event_ids.add(body.event_id)
                    store[order_id] = state
    elif kind == "replay":
        assert out is not None
        count = replay(path, out, Policy(), parse_time(UNTIL)).read
    else:
        assert out is not None
        count = replay_jobs(path, out, Policy(), jobs, parse_time(UNTIL)).read
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # a shard's peak (the largest of the children's)
    shard_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"events": count, "seconds": seconds, "peak_rss_mb": rss_mb,
                      "shard_rss_mb": shard_mb}))  # fmt: skip


def _measure(kind: str, path: Path, out: Path | None = None, jobs: int = 1) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--phase", kind, str(path), "--jobs", str(jobs)]
    if out is not None:
        cmd += ["--out", str(out)]
    if kind != "jobs" and hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", "0", *cmd]  # one core, as the target says
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _input(events: int) -> Path:
    path = DATA / f"simulated-{events}.jsonl"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        orders = int(events / EVENTS_PER_ORDER)
        print(f"generating {path.name} ({orders} orders, once)...", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "streams.tools.cli", "simulate", "--orders", str(orders),
             "--seed", "2026", "--span", "P30D", "--out", str(path)],
            check=True,
        )  # fmt: skip
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="approximate input size")
    parser.add_argument(
        "--jobs", type=int, default=len(os.sched_getaffinity(0)),
        help="processes of the sharded replay (default: the cores)",
    )  # fmt: skip
    phases = ("orjson", "msgspec", "floor", "replay", "jobs")
    parser.add_argument("--phase", choices=phases, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _phase(args.phase, args.path, args.out, args.jobs)
        return 0
    path = _input(args.events)
    size_mb = path.stat().st_size / 1e6
    parses = {kind: _measure(kind, path) for kind in ("orjson", "msgspec")}
    floor = _measure("floor", path)
    with tempfile.TemporaryDirectory() as folder:
        one, many = Path(folder) / "one", Path(folder) / "many"
        run = _measure("replay", path, one)
        sharded = _measure("jobs", path, many, args.jobs)
        identical = sorted(p.name for p in one.iterdir()) == sorted(
            p.name for p in many.iterdir()
        ) and all(_same(file, many / file.name) for file in one.iterdir())
        out_mb = sum(file.stat().st_size for file in one.iterdir()) / 1e6
    parse = min(parses.values(), key=lambda figures: figures["seconds"])
    n = run["events"]
    rate = n / run["seconds"]
    ratio = run["seconds"] / parse["seconds"]
    print(f"input          {int(n):,} events, {size_mb:.0f} MB ({path.name})")
    for kind, figures in parses.items():
        seconds = figures["seconds"]
        print(f"parse {kind:<8} {seconds:.2f} s  {n / seconds:>12,.0f} events/s")
    floor_s = floor["seconds"]
    print(f"floor          {floor_s:.2f} s  {n / floor_s:>12,.0f} events/s   (no rules)")
    print(f"replay         {run['seconds']:.2f} s  {rate:>12,.0f} events/s   target >= 150,000")
    print(f"floor/parse    {floor_s / parse['seconds']:.1f}x (of the faster parse)")
    print(f"replay/parse   {ratio:.1f}x (of the faster parse)      target <= 4x")
    print(f"peak RSS       parse {parse['peak_rss_mb']:.0f} MB, replay {run['peak_rss_mb']:.0f} MB")
    jobs_s = sharded["seconds"]
    print(
        f"replay --jobs {args.jobs} {jobs_s:.2f} s  {n / jobs_s:>12,.0f} events/s   "
        f"{run['seconds'] / jobs_s:.2f}x the one-core replay   target >= 1.8x on two cores"
    )
    print(
        f"  peak RSS     parent {sharded['peak_rss_mb']:.0f} MB, largest shard "
        f"{sharded['shard_rss_mb']:.0f} MB"
    )
    verdict = "yes" if identical else "NO"
    print(f"  byte-identical to the one-core replay: {verdict} ({out_mb:.0f} MB of output)")
    return 0 if identical else 1


def _same(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (read a MB at a time)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as left, b.open("rb") as right:
        while block := left.read(1 << 20):
            if block != right.read(1 << 20):
                return False
    return True


if __name__ == "__main__":
    sys.exit(main())
