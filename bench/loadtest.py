"""The load test: producers and workers as separate processes, then the oracle's verdict.

    make loadtest [EVENTS=...] [PRODUCERS=2] [WORKERS=2] [DATASET=polis|synthetic] [RATE=...]

Uses FEEDBACK_REDIS_URL / FEEDBACK_MONGODB_URI when set, else starts the local stack. Writes
``bench/results/loadtest-latest.json`` and a timestamped copy; exits 1 when anything was lost,
mismatched or duplicated, 2 when it did not finish in time.
"""

from __future__ import annotations

import argparse
import json
import os
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
from tqdm import tqdm

from bench import datasets, oracle
from feedback_worker.metrics import LatencyHistogram

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def servers() -> dict[str, str]:
    url, uri = os.environ.get("FEEDBACK_REDIS_URL"), os.environ.get("FEEDBACK_MONGODB_URI")
    if url and uri:
        return {"FEEDBACK_REDIS_URL": url, "FEEDBACK_MONGODB_URI": uri}
    up = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "stack.py"), "up"],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split("=", 1) for line in up.stdout.split())


def group_progress(client: redis.Redis, stream: str, group: str) -> tuple[int, int, bool]:
    """(entries delivered to the group, pending, caught up) from XINFO.

    Caught up means nothing is pending and the group has been handed the stream's last entry.
    Redis may forget ``entries-read`` after a restart, so that count is only for progress bars.
    """
    try:
        groups: Any = client.xinfo_groups(stream)
        last_id = client.xinfo_stream(stream)["last-generated-id"]
    except redis.ResponseError:  # the stream does not exist yet
        return 0, 0, False
    for info in groups:
        if info["name"].decode() == group:
            pending = int(info["pending"])
            caught_up = pending == 0 and info["last-delivered-id"] == last_id
            return int(info["entries-read"] or 0), pending, caught_up
    return 0, 0, False


def start_worker(name: str, env: dict[str, str], logs: Path) -> tuple[Any, Path]:
    """One worker process with consumer name ``name``; its JSON log goes to ``logs``."""
    out = logs / f"{name}.log"
    with out.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "feedback_worker", "run"],
            env={**env, "FEEDBACK_CONSUMER": name},
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    return process, out


def start_workers(count: int, env: dict[str, str], logs: Path) -> list[tuple[Any, Path]]:
    return [start_worker(f"loadtest-worker-{index}", env, logs) for index in range(count)]


def start_producers(
    events: list[dict[str, Any]], count: int, env: dict[str, str], rate: float, tmp: Path
) -> list[Any]:
    producers = []
    for index in range(count):
        shard = tmp / f"shard-{index}.jsonl"
        shard.write_text("".join(json.dumps(e) + "\n" for e in events[index::count]))
        producers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.produce",
                    "--input",
                    str(shard),
                    "--redis-url",
                    env["FEEDBACK_REDIS_URL"],
                    "--stream",
                    env["FEEDBACK_STREAM"],
                    "--rate",
                    str(rate / count if rate else 0),
                    "--attempts",
                    env.get("PRODUCER_ATTEMPTS", "5"),
                ],
                stdout=subprocess.PIPE,
                cwd=ROOT,
                env=env,
            )
        )
    return producers


def stop_workers(workers: list[tuple[Any, Path]]) -> LatencyHistogram:
    """SIGTERM every worker, then merge the latency histograms of their final metrics lines."""
    for process, _ in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    histogram = LatencyHistogram()
    for process, _ in workers:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    for log_file in {log for _, log in workers}:
        for line in log_file.read_text().splitlines():
            if '"worker_stopped"' in line:
                histogram.merge(json.loads(line)["e2e_histogram"])
    return histogram


def verdict_for(
    events: list[dict[str, Any]], reports: list[dict[str, Any]], mongo: Any, database: str
) -> tuple[list[dict[str, Any]], int, oracle.Comparison]:
    """The events whose submit returned, how many did not, and the oracle's comparison."""
    failed_ids = {i for r in reports for i in r.get("failed_ids", [])}
    sent = [e for e in events if e["event_id"] not in failed_ids]
    docs = mongo[database]["feedback"].find(
        {}, {"userId": 1, "agentId": 1, "sourceId": 1, "source": 1, "latest": 1}
    )
    return sent, len(failed_ids), oracle.compare(oracle.expected_state(sent), docs)


def write_result(name: str, run_id: str, result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    (RESULTS / f"{name}-latest.json").write_text(text)
    (RESULTS / f"{name}-{run_id}.json").write_text(text)
    print(text, end="")


def wait_drained(
    client: redis.Redis, stream: str, group: str, total: int, deadline: float, producers: list[Any]
) -> bool:
    with tqdm(total=total, unit="ev", desc="written", smoothing=0.1, mininterval=1) as bar:
        while time.monotonic() < deadline:
            read, pending, caught_up = group_progress(client, stream, group)
            bar.update(max(0, min(total, read) - pending - bar.n))
            producing = any(p.poll() is None for p in producers)
            if not producing and caught_up:
                return True
            time.sleep(0.2)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    events_env = os.environ.get("EVENTS", "")
    default_events = None if events_env in ("", "all") else int(events_env)
    parser.add_argument("--events", type=int, default=default_events, help="default: all")
    parser.add_argument("--producers", type=int, default=int(os.environ.get("PRODUCERS", "2")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    parser.add_argument("--dataset", default=os.environ.get("DATASET", "polis"))
    parser.add_argument("--rate", type=float, default=float(os.environ.get("RATE") or 0))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "20241009")))
    parser.add_argument("--timeout-s", type=float, default=float(os.environ.get("TIMEOUT", "3600")))
    args = parser.parse_args()

    events = datasets.load(args.dataset, args.events, args.seed)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    env = {
        **os.environ,
        **servers(),
        "FEEDBACK_STREAM": f"loadtest-{run_id}",
        "FEEDBACK_GROUP": "loadtest",
        "FEEDBACK_DATABASE": f"loadtest_{run_id}",
        "FEEDBACK_LOG_FORMAT": "json",
        "FEEDBACK_MONGO_TIMEOUT_MS": os.environ.get("FEEDBACK_MONGO_TIMEOUT_MS", "60000"),
        "FEEDBACK_CLAIM_MIN_IDLE_MS": os.environ.get("FEEDBACK_CLAIM_MIN_IDLE_MS", "120000"),
    }
    stream, group = env["FEEDBACK_STREAM"], env["FEEDBACK_GROUP"]
    client = redis.Redis.from_url(env["FEEDBACK_REDIS_URL"])
    mongo: MongoClient[dict[str, Any]] = MongoClient(env["FEEDBACK_MONGODB_URI"])
    print(
        f"load test {run_id}: {len(events)} events ({args.dataset}), "
        f"{args.producers} producers, {args.workers} workers",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        workers = start_workers(args.workers, env, tmp)
        producers: list[Any] = []
        try:
            started = time.monotonic()
            producers = start_producers(events, args.producers, env, args.rate, tmp)
            deadline = started + args.timeout_s
            drained = wait_drained(client, stream, group, len(events), deadline, producers)
            elapsed = time.monotonic() - started
            reports = [json.loads(p.communicate()[0] or "{}") for p in producers]
        finally:
            for process in producers:
                if process.poll() is None:
                    process.kill()
            histogram = stop_workers(workers)
        sent, failed, verdict = verdict_for(events, reports, mongo, env["FEEDBACK_DATABASE"])
        dead = int(client.xlen("{" + stream + "}:dead"))

    result = {
        "run_id": run_id,
        "dataset": args.dataset,
        "seed": args.seed,
        "producers": args.producers,
        "workers": args.workers,
        "rate": args.rate or None,
        "events_sent": len(sent),
        "submit_failed": failed,
        **verdict.counts(),
        "dead_lettered": dead,
        "finished": drained,
        "seconds": round(elapsed, 2),
        "events_per_s": round(len(sent) / elapsed, 1),
        "e2e_p50_ms": histogram.quantile(0.5),
        "e2e_p99_ms": histogram.quantile(0.99),
        "examples": verdict.examples,
    }
    write_result("loadtest", run_id, result)
    if os.environ.get("KEEP") != "1":
        client.delete(stream, "{" + stream + "}:dead")
        mongo.drop_database(env["FEEDBACK_DATABASE"])
    if verdict.lost or verdict.mismatched or verdict.duplicates:
        return 1
    return 0 if drained else 2


if __name__ == "__main__":
    sys.exit(main())
