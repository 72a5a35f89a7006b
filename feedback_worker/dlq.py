"""Dead-letter tooling: list, show, replay and purge the entries workers set aside."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from feedback_ingest.errors import InvalidEvent
from feedback_ingest.wire import decode_entry
from feedback_worker.deadletter import original_fields


@dataclass(frozen=True, slots=True)
class DeadEntry:
    dead_id: str
    fields: dict[bytes, bytes]

    @property
    def reason(self) -> str:
        return self.fields.get(b"reason", b"").decode(errors="replace")

    @property
    def original(self) -> dict[bytes, bytes]:
        return original_fields(self.fields)


def _entries(raw: Any) -> list[DeadEntry]:
    return [DeadEntry(i.decode() if isinstance(i, bytes) else i, dict(f)) for i, f in raw]


def list_dead(client: redis.Redis, dead_stream: str, count: int) -> list[DeadEntry]:
    return _entries(client.xrange(dead_stream, count=count))


def get_dead(client: redis.Redis, dead_stream: str, dead_id: str) -> DeadEntry | None:
    found = _entries(client.xrange(dead_stream, min=dead_id, max=dead_id))
    return found[0] if found else None


@dataclass
class ReplayReport:
    replayed: list[str]
    still_invalid: dict[str, str]


def replay(
    client: redis.Redis, stream: str, dead_stream: str, entries: list[DeadEntry]
) -> ReplayReport:
    """Re-validate each entry; valid ones go back to the stream and leave the dead-letter stream
    in one transaction, invalid ones stay where they are with the reason they fail now."""
    report = ReplayReport([], {})
    for entry in entries:
        try:
            decode_entry(entry.original)
        except InvalidEvent as exc:
            report.still_invalid[entry.dead_id] = exc.reason
            continue
        pipe = client.pipeline(transaction=True)
        pipe.xadd(stream, entry.original)  # type: ignore[arg-type]
        pipe.xdel(dead_stream, entry.dead_id)
        pipe.execute()
        report.replayed.append(entry.dead_id)
    return report


def purge(client: redis.Redis, dead_stream: str, dead_ids: list[str]) -> int:
    """Delete the given dead-letter entries, or all of them when ``dead_ids`` is empty."""
    if dead_ids:
        return int(client.xdel(dead_stream, *dead_ids))
    count = int(client.xlen(dead_stream))
    client.delete(dead_stream)
    return count
