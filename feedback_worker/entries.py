"""The worker's unit of work: one stream entry, and what became of it."""

from __future__ import annotations

from dataclasses import dataclass

from feedback_ingest.wire import FeedbackEvent


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One entry as read from Redis: its id and raw field map (bytes, exactly as stored)."""

    entry_id: str
    fields: dict[bytes, bytes]

    @property
    def received_ms(self) -> int:
        """When Redis accepted the entry: the millisecond part of its id."""
        return int(self.entry_id.split("-", 1)[0])


@dataclass(frozen=True, slots=True)
class DecodedEntry:
    """An entry whose fields passed the wire contract."""

    entry: StreamEntry
    event: FeedbackEvent


@dataclass(frozen=True, slots=True)
class Rejection:
    """An entry to dead-letter, with the reason (a string: never an exception object)."""

    entry: StreamEntry
    reason: str
