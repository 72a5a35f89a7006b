"""The writer's error handling, driven by a collection that fails the way servers do.

One MongoDB-protocol server stops a bulk write at the first failing statement and reports index
0 whatever its position; the writer must never trust that position. This double does the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pymongo.errors
import pytest

from feedback_worker.writer import MongoWriter
from tests.factories import decoded


@dataclass
class Result:
    matched_count: int
    modified_count: int
    upserted_count: int


class StopAtFirstError:
    """bulk_write that applies statements in order and stops at a refused one (index 0)."""

    def __init__(self, refuse: set[str], duplicate_once: set[str] | None = None) -> None:
        self.refuse = refuse
        self.duplicate_once = set(duplicate_once or ())
        self.applied: list[str] = []
        self.calls = 0

    async def bulk_write(self, ops: list[Any], ordered: bool) -> Result:
        self.calls += 1
        done = 0
        for op in ops:
            event_id = op._doc["$max"]["latest"]["eventId"]
            if event_id in self.refuse or event_id in self.duplicate_once:
                code = 11000 if event_id in self.duplicate_once else 2
                self.duplicate_once.discard(event_id)
                raise pymongo.errors.BulkWriteError(
                    {
                        "writeErrors": [{"index": 0, "code": code, "errmsg": f"no {event_id}"}],
                        "nUpserted": done,
                    }
                )
            self.applied.append(event_id)
            done += 1
        return Result(0, 0, done)


@pytest.mark.parametrize("position", [0, 5, 9])
async def test_a_refused_event_is_isolated_and_the_rest_is_written(position: int) -> None:
    items = [decoded(f"{i}-0", f"u{i}", 1, f"e{i}", i) for i in range(10)]
    bad = f"e{position}"
    collection = StopAtFirstError(refuse={bad})
    outcome = await MongoWriter(collection, chunk_events=32).write(items)  # type: ignore[arg-type]
    assert outcome.failed == {f"{position}-0": f"write rejected: no {bad} [code 2]"}
    assert set(collection.applied) == {f"e{i}" for i in range(10)} - {bad}


async def test_a_duplicate_key_race_is_retried_not_failed() -> None:
    items = [decoded(f"{i}-0", f"u{i}", 1, f"e{i}", i) for i in range(4)]
    collection = StopAtFirstError(refuse=set(), duplicate_once={"e2"})
    outcome = await MongoWriter(collection, chunk_events=32).write(items)  # type: ignore[arg-type]
    assert outcome.failed == {}
    assert set(collection.applied) == {"e0", "e1", "e2", "e3"}


async def test_transient_errors_propagate_for_a_retry_of_the_whole_batch() -> None:
    from feedback_ingest.errors import MongoUnavailable

    class Down:
        async def bulk_write(self, ops: list[Any], ordered: bool) -> Result:
            raise pymongo.errors.AutoReconnect("primary stepped down")

    with pytest.raises(MongoUnavailable):
        await MongoWriter(Down(), chunk_events=32).write([decoded("1-0", "u", 1, "e", 1)])  # type: ignore[arg-type]
