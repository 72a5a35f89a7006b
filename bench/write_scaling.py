"""How the cost of one upsert grows with the collection: measured side by side in one run.

    .venv/bin/python -m bench.write_scaling [--sizes 1000,4000,16000] [--probe 256]

For each size the collection is first filled to that many documents, then ``--probe`` upserts of
existing keys (newer events, so every one modifies) are timed through the worker's own writer.
On MongoDB an ``_id`` equality is an index lookup, so the rate stays flat; a server that scans
the collection for every statement slows down in proportion to its size. The ratios, not the
absolute rates, are the result (this machine is shared).
Writes ``bench/results/write-scaling.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from bench.loadtest import servers
from feedback_ingest.wire import FeedbackEvent
from feedback_worker.entries import DecodedEntry, StreamEntry
from feedback_worker.writer import MongoWriter

RESULTS = Path(__file__).resolve().parent / "results"


def items(start: int, stop: int, time_ms: int) -> list[DecodedEntry]:
    return [
        DecodedEntry(
            StreamEntry(f"{time_ms}-{i}", {}),
            FeedbackEvent.create(
                user_id=f"u{i}",
                agent_id="a",
                source_id="s",
                source="bench",
                value=i,
                event_time=time_ms,
                event_id=f"e{i}",
            ),
        )
        for i in range(start, stop)
    ]


async def measure(uri: str, sizes: list[int], probe: int) -> list[dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    database = f"bench_{uuid.uuid4().hex[:8]}"
    writer = MongoWriter(client[database]["feedback"], chunk_events=32)
    rows, filled = [], 0
    try:
        for size in sizes:
            await writer.write(items(filled, size, 1_000))
            filled = size
            started = time.perf_counter()
            outcome = await writer.write(items(0, probe, 2_000 + size))
            seconds = time.perf_counter() - started
            assert outcome.written == probe, outcome
            rows.append(
                {"docs": size, "upserts": probe, "upserts_per_s": round(probe / seconds, 1)}
            )
            print(f"{size:>8} docs: {probe / seconds:10.1f} upserts/s", flush=True)
    finally:
        await client.drop_database(database)
        await client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,4000,16000")
    parser.add_argument("--probe", type=int, default=256)
    args = parser.parse_args()
    uri = os.environ.get("FEEDBACK_MONGODB_URI") or servers()["FEEDBACK_MONGODB_URI"]
    rows = asyncio.run(measure(uri, [int(s) for s in args.sizes.split(",")], args.probe))
    base = rows[0]["upserts_per_s"]
    for row in rows:
        row["rate_vs_smallest"] = round(row["upserts_per_s"] / base, 3)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "write-scaling.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
