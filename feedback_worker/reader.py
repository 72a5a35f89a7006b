"""Reading the stream through the consumer group: new entries, own history, and idle claims."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio
import redis.exceptions
import structlog

from feedback_worker.entries import StreamEntry

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """One row of the group's pending list: who holds it, and Redis's own delivery counter."""

    entry_id: str
    consumer: str
    deliveries: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(raw: list[Any]) -> list[StreamEntry]:
    # An entry deleted since delivery can come back as [id, None]: it gets an empty field map,
    # and callers treat such ids as gone (case C01).
    return [StreamEntry(_text(entry_id), dict(fields or {})) for entry_id, fields in raw]


def is_nogroup(exc: redis.exceptions.ResponseError) -> bool:
    """True when Redis says the stream or the group does not exist (restart, flush, eviction).

    A read blocked while the key is deleted gets ``UNBLOCKED the stream key no longer exists``
    rather than ``NOGROUP``; both mean the group must be created again (case C02).
    """
    text = str(exc)
    return text.startswith("NOGROUP") or text.startswith("UNBLOCKED")


class StreamReader:
    """Thin, typed wrapper over the group commands; it keeps no state but the names."""

    def __init__(self, client: redis.asyncio.Redis, stream: str, group: str, consumer: str):
        self._client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer

    async def ensure_group(self) -> bool:
        """Create the group at the start of the stream (MKSTREAM); True if it was created.

        Starting at ``0`` means a backlog written before the first worker ever ran is consumed
        (case C03). "Already exists" is success.
        """
        try:
            await self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    async def read_new(self, count: int, block_ms: int) -> list[StreamEntry]:
        """Entries never delivered to any consumer of the group (``>``), waiting up to block_ms."""
        reply: Any = await self._client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return _entries(reply[0][1]) if reply else []

    async def pending_page(
        self, after: str, count: int, min_idle_ms: int, consumer: str | None
    ) -> list[PendingEntry]:
        """Pending entries after ``after`` (exclusive) idle at least ``min_idle_ms``, with counts.

        This only looks: nothing is claimed, so the delivery counts can decide how to claim.
        """
        start = "-" if after == "-" else f"({after}"
        rows: Any = await self._client.xpending_range(
            self.stream,
            self.group,
            min=start,
            max="+",
            count=count,
            consumername=consumer,
            idle=min_idle_ms,
        )
        return [
            PendingEntry(
                _text(row["message_id"]), _text(row["consumer"]), int(row["times_delivered"])
            )
            for row in rows
        ]

    async def refresh(self, ids: list[str]) -> None:
        """Reset the idle time of entries this consumer is still working on (JUSTID does not
        count a delivery), so a slow batch is not mistaken for a dead consumer's."""
        if ids:
            await self._client.xclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=0,
                message_ids=list[Any](ids),
                justid=True,
            )

    async def claim(self, ids: list[str], min_idle_ms: int) -> tuple[list[StreamEntry], list[str]]:
        """Take ``ids`` over for this consumer; return the entries and the ids whose body is gone.

        Redis (7.0+) drops an id whose entry was trimmed or deleted from the pending list instead
        of returning it (C01). An id can also come back unclaimed because a peer took it first;
        that one is still pending, so only ids that left the pending list count as gone.
        """
        if not ids:
            return [], []
        raw: Any = await self._client.xclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=min_idle_ms,
            message_ids=list[Any](ids),
        )
        entries = [e for e in _entries(raw) if e.fields]
        returned = {e.entry_id for e in entries}
        missing = [entry_id for entry_id in ids if entry_id not in returned]
        if not missing:
            return entries, []
        rows: Any = await self._client.xpending_range(
            self.stream,
            self.group,
            min=min(missing, key=entry_id_key),
            max=max(missing, key=entry_id_key),
            count=len(ids) + 100,
        )
        still_pending = {_text(row["message_id"]) for row in rows}
        return entries, [entry_id for entry_id in missing if entry_id not in still_pending]


def entry_id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return (int(ms), int(seq or 0))
