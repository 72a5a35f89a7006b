"""The chaos test: producers and workers under SIGKILLs, server restarts and long pauses.

    make chaos [EVENTS=5000] [KILLS=50] [REDIS_RESTARTS=3] [MONGO_RESTARTS=3] [PAUSES=5]

Runs on the local stack only (it restarts the servers: Redis with AOF ``appendfsync always``, so
a restart loses no acknowledged XADD). Faults come one at a time, in a seeded order, while the
producers offer a fixed rate; then the run waits for the group to drain and the oracle compares
MongoDB with the last-writer-wins fold of every event whose ``submit()`` returned. Bounded in
count and time; writes ``bench/results/chaos-latest.json``; exits 1 on any lost, mismatched or
duplicated key.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from pymongo import MongoClient

from bench import datasets
from bench.loadtest import (
    ROOT,
    group_progress,
    start_producers,
    start_worker,
    stop_workers,
    verdict_for,
    write_result,
)

STACK = [sys.executable, str(ROOT / "scripts" / "stack.py")]
WORKER_SETTINGS = {
    "FEEDBACK_BLOCK_MS": "500",
    "FEEDBACK_REDIS_SOCKET_TIMEOUT_S": "3",
    "FEEDBACK_MONGO_TIMEOUT_MS": "4000",
    "FEEDBACK_CLAIM_MIN_IDLE_MS": "5000",
    "FEEDBACK_CLAIM_INTERVAL_S": "1",
    "FEEDBACK_SHUTDOWN_GRACE_S": "10",
    "FEEDBACK_TRIM_INTERVAL_S": "5",
    # Consumers that a kill replaced are removed once their entries have been taken over.
    "FEEDBACK_CONSUMER_EXPIRY_MS": "5000",
    "FEEDBACK_LOG_FORMAT": "json",
}


def arg(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


class Fleet:
    """The worker processes; a killed worker is replaced, under its own name or a new one."""

    def __init__(self, size: int, env: dict[str, str], logs: Path, rng: random.Random) -> None:
        self.env, self.logs, self.rng = env, logs, rng
        self.next_name = size
        self.workers = [start_worker(f"chaos-{i}", env, logs) for i in range(size)]
        self.names = [f"chaos-{i}" for i in range(size)]

    def kill_one(self) -> None:
        index = self.rng.randrange(len(self.workers))
        process, _ = self.workers[index]
        process.kill()
        process.wait()
        if self.rng.random() < 0.5:  # a new pod: its predecessor's entries must be claimed
            self.names[index] = f"chaos-{self.next_name}"
            self.next_name += 1
        self.workers[index] = start_worker(self.names[index], self.env, self.logs)

    def pause_one(self, seconds: float) -> None:
        process, _ = self.workers[self.rng.randrange(len(self.workers))]
        process.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        process.send_signal(signal.SIGCONT)


def restart(server: str, state: Path) -> None:
    subprocess.run(
        [*STACK, "restart", server, "--dir", str(state)], check=True, capture_output=True
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=arg("EVENTS", 3000))
    parser.add_argument("--kills", type=int, default=arg("KILLS", 50))
    parser.add_argument("--redis-restarts", type=int, default=arg("REDIS_RESTARTS", 3))
    parser.add_argument("--mongo-restarts", type=int, default=arg("MONGO_RESTARTS", 3))
    parser.add_argument("--pauses", type=int, default=arg("PAUSES", 5))
    parser.add_argument("--workers", type=int, default=arg("WORKERS", 3))
    parser.add_argument("--interval-s", type=float, default=float(os.environ.get("INTERVAL", 2)))
    parser.add_argument("--seed", type=int, default=arg("SEED", 20241009))
    parser.add_argument("--timeout-s", type=float, default=float(os.environ.get("TIMEOUT", 1800)))
    args = parser.parse_args()
    if os.environ.get("FEEDBACK_REDIS_URL") or os.environ.get("FEEDBACK_MONGODB_URI"):
        raise SystemExit("chaos restarts its servers: it runs on its own local stack only")

    rng = random.Random(args.seed)
    faults = (
        ["kill"] * args.kills
        + ["redis"] * args.redis_restarts
        + ["mongo"] * args.mongo_restarts
        + ["pause"] * args.pauses
    )
    rng.shuffle(faults)
    events = datasets.load("polis", args.events, args.seed)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    counts = {"kill": 0, "redis": 0, "mongo": 0, "pause": 0}
    pause_s = int(WORKER_SETTINGS["FEEDBACK_CLAIM_MIN_IDLE_MS"]) / 1000 + 2

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        state = tmp / "stack"
        up = subprocess.run(
            [*STACK, "up", "--dir", str(state)], capture_output=True, text=True, check=True
        )
        urls = dict(line.split("=", 1) for line in up.stdout.split())
        env = {
            **os.environ,
            **urls,
            **WORKER_SETTINGS,
            "PRODUCER_ATTEMPTS": "40",
            "FEEDBACK_STREAM": f"chaos-{run_id}",
            "FEEDBACK_GROUP": "chaos",
            "FEEDBACK_DATABASE": f"chaos_{run_id}",
        }
        client = redis.Redis.from_url(urls["FEEDBACK_REDIS_URL"], socket_timeout=5)
        fleet: Fleet | None = None
        try:
            fleet = Fleet(args.workers, env, tmp, rng)
            rate = len(events) / max(1.0, len(faults) * args.interval_s)
            producers = start_producers(events, 2, env, rate, tmp)
            max_pending = 0
            last_fault = time.monotonic()
            for fault in faults:
                time.sleep(args.interval_s)
                if fault == "kill":
                    fleet.kill_one()
                elif fault == "pause":
                    fleet.pause_one(pause_s)
                else:
                    restart(fault, state)
                counts[fault] += 1
                last_fault = time.monotonic()
                with contextlib.suppress(redis.ConnectionError):
                    _, pending, _ = group_progress(client, env["FEEDBACK_STREAM"], "chaos")
                    max_pending = max(max_pending, pending)
                print(f"chaos: {fault:<5} {counts}", flush=True)
            reports = [json.loads(p.communicate()[0] or "{}") for p in producers]
            deadline = time.monotonic() + args.timeout_s
            drained = False
            while time.monotonic() < deadline:
                _, pending, drained = group_progress(client, env["FEEDBACK_STREAM"], "chaos")
                max_pending = max(max_pending, pending)
                if drained:
                    break
                time.sleep(0.5)
            recovered_after_s = round(time.monotonic() - last_fault, 1)
            groups: Any = client.xinfo_groups(env["FEEDBACK_STREAM"])
            consumers_left = int(groups[0]["consumers"]) if groups else 0
            stop_workers(fleet.workers)
            mongo: MongoClient[dict[str, Any]] = MongoClient(urls["FEEDBACK_MONGODB_URI"])
            sent, failed, verdict = verdict_for(events, reports, mongo, env["FEEDBACK_DATABASE"])
            dead = int(client.xlen("{" + env["FEEDBACK_STREAM"] + "}:dead"))
            stream_left = int(client.xlen(env["FEEDBACK_STREAM"]))
        finally:
            subprocess.run([*STACK, "down", "--dir", str(state)], capture_output=True, check=False)
            for process, _ in fleet.workers if fleet else []:
                if process.poll() is None:
                    process.kill()

    result = {
        "run_id": run_id,
        "events_sent": len(sent),
        "submit_failed": failed,
        "worker_kills": counts["kill"],
        "redis_restarts": counts["redis"],
        "mongo_restarts": counts["mongo"],
        "pauses": counts["pause"],
        **verdict.counts(),
        "dead_lettered": dead,
        "max_pending_seen": max_pending,
        "recovered_after_s": recovered_after_s if drained else None,
        "stream_length_at_end": stream_left,
        "consumer_names_used": fleet.next_name if fleet else 0,
        "consumers_left_at_end": consumers_left,
        "finished": drained,
        "examples": verdict.examples,
    }
    write_result("chaos", run_id, result)
    if verdict.lost or verdict.mismatched or verdict.duplicates:
        return 1
    return 0 if drained else 2


if __name__ == "__main__":
    sys.exit(main())
