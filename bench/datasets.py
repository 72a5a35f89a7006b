"""Load-test inputs: the real Polis votes shipped in ``bench/data/polis``, or synthetic Zipf keys.

Every event carries a deterministic event id, so the oracle can fold exactly what was sent.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

POLIS_DIR = Path(__file__).resolve().parent / "data" / "polis"

Event = dict[str, Any]


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(io.StringIO(handle.read()))


def polis_events() -> list[Event]:
    """Every vote of every shipped conversation, in file order (see the data README)."""
    events: list[Event] = []
    for folder in sorted(p for p in POLIS_DIR.iterdir() if p.is_dir()):
        conv = folder.name
        comments = {row["comment-id"]: row for row in _rows(folder / "comments.csv.gz")}
        for row in _rows(folder / "votes.csv.gz"):
            comment = comments[row["comment-id"]]
            events.append(
                {
                    "user_id": f"{conv}:{row['voter-id']}",
                    "agent_id": f"{conv}:{comment['author-id']}",
                    "source_id": f"{conv}:{row['comment-id']}",
                    "source": "polis",
                    "value": int(row["vote"]),
                    "event_time": int(row["timestamp"]),
                    "metadata": {
                        "conversation": conv,
                        "moderated": int(comment["moderated"]),
                        "datetime_export": row["datetime"],
                    },
                    "event_id": f"polis-{len(events):07d}",
                }
            )
    return events


def synthetic_events(count: int, *, keys: int, zipf_s: float, seed: int) -> list[Event]:
    """``count`` events over ``keys`` keys with Zipf(s) popularity and jittered event times."""
    rng = random.Random(seed)
    weights = [1.0 / (rank**zipf_s) for rank in range(1, keys + 1)]
    chosen = rng.choices(range(keys), weights=weights, k=count)
    base_ms = 1_700_000_000_000
    return [
        {
            "user_id": f"user-{key % 9973}",
            "agent_id": f"agent-{key % 31}",
            "source_id": f"msg-{key}",
            "source": "synthetic",
            "value": rng.choice((-1, 0, 1, 2, 3, 4, 5)),
            # Times move forward with jitter, so some later arrivals carry earlier times.
            "event_time": base_ms + index * 10 + rng.randint(-5_000, 5_000),
            "metadata": {"seq": index},
            "event_id": f"syn-{index:08d}",
        }
        for index, key in enumerate(chosen)
    ]


def load(dataset: str, events: int | None, seed: int) -> list[Event]:
    """The replay: the dataset shuffled with ``seed``, cut to the first ``events`` events."""
    if dataset == "polis":
        data = polis_events()
    elif dataset == "synthetic":
        count = events or 100_000
        data = synthetic_events(count, keys=max(1, count // 4), zipf_s=1.1, seed=seed)
    else:
        raise SystemExit(f"unknown DATASET {dataset!r} (polis or synthetic)")
    random.Random(seed).shuffle(data)
    return data[:events] if events else data
