"""The load-test oracle: what MongoDB must hold, computed without any of the worker's code.

It folds the sent events into last-writer-wins state (later event time wins; equal times go to the
larger event id) and compares that, key by key, with the documents in the collection.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Key = tuple[str, str, str, str]


def expected_state(events: Iterable[dict[str, Any]]) -> dict[Key, tuple[int, str, Any]]:
    state: dict[Key, tuple[int, str, Any]] = {}
    for e in events:
        key = (e["user_id"], e["agent_id"], e["source_id"], e["source"])
        candidate = (int(e["event_time"]), str(e["event_id"]), e["value"])
        held = state.get(key)
        if held is None or (candidate[0], candidate[1]) > (held[0], held[1]):
            state[key] = candidate
    return state


@dataclass
class Comparison:
    expected_docs: int
    docs_in_db: int
    lost: int
    mismatched: int
    duplicates: int
    unexpected: int
    examples: list[str]

    def counts(self) -> dict[str, int]:
        """The figures every result file reports."""
        return {
            "expected_docs": self.expected_docs,
            "docs_in_db": self.docs_in_db,
            "lost": self.lost,
            "mismatched": self.mismatched,
            "duplicates": self.duplicates,
            "unexpected": self.unexpected,
        }


def _ms(value: datetime) -> int:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def compare(
    expected: dict[Key, tuple[int, str, Any]], docs: Iterable[dict[str, Any]]
) -> Comparison:
    seen: Counter[Key] = Counter()
    mismatched = unexpected = 0
    examples: list[str] = []
    total = 0
    for doc in docs:
        total += 1
        key = (doc.get("userId"), doc.get("agentId"), doc.get("sourceId"), doc.get("source"))
        seen[key] += 1  # type: ignore[index]
        want = expected.get(key)  # type: ignore[arg-type]
        if want is None:
            unexpected += 1
            continue
        latest = doc.get("latest") or {}
        got = (
            _ms(latest["eventTime"]) if "eventTime" in latest else None,
            latest.get("eventId"),
            latest.get("value"),
        )
        if got != want and seen[key] == 1:  # type: ignore[index]
            mismatched += 1
            if len(examples) < 5:
                examples.append(f"{key}: stored {got}, expected {want}")
    lost = sum(1 for key in expected if key not in seen)
    duplicates = sum(1 for count in seen.values() if count > 1)
    return Comparison(len(expected), total, lost, mismatched, duplicates, unexpected, examples)
