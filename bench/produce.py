"""One load-test producer process: submit the events of one shard, optionally at a fixed rate."""

from __future__ import annotations

import argparse
import json
import sys
import time

from feedback_ingest import FeedbackError, FeedbackProducer

CHUNK = 100


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s for this process")
    parser.add_argument("--attempts", type=int, default=5, help="tries per chunk before giving up")
    args = parser.parse_args()
    with open(args.input, encoding="utf-8") as handle:
        events = [json.loads(line) for line in handle]
    sent = 0
    failed_ids: list[str] = []
    started = time.monotonic()
    with FeedbackProducer.from_url(
        args.redis_url, stream=args.stream, attempts=args.attempts
    ) as producer:
        for start in range(0, len(events), CHUNK):
            chunk = events[start : start + CHUNK]
            if args.rate > 0:
                due = started + start / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
            try:
                producer.submit_many(chunk)
                sent += len(chunk)
            except FeedbackError as exc:
                failed_ids.extend(e["event_id"] for e in chunk)
                print(json.dumps({"error": str(exc)}), file=sys.stderr)
    print(
        json.dumps({"sent": sent, "failed_ids": failed_ids, "seconds": time.monotonic() - started})
    )


if __name__ == "__main__":
    main()
