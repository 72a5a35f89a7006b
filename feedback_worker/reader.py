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
class ClaimResult:
    """One XAUTOCLAIM page: entries now ours, ids whose body is gone, and the next cursor."""

    entries: list[StreamEntry]
    deleted_ids: list[str]
    cursor: str


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(raw: list[Any]) -> list[StreamEntry]:
    # XREADGROUP of own history returns [id, None] for an entry deleted since delivery; such ids
    # are handled by the caller (acked as lost), so they carry an empty field map here.
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

    async def read_own_pending(self, after_id: str, count: int) -> list[StreamEntry]:
        """This consumer's delivered-but-unacked entries after ``after_id`` (recovery only)."""
        reply: Any = await self._client.xreadgroup(
            self.group, self.consumer, {self.stream: after_id}, count=count
        )
        return _entries(reply[0][1]) if reply else []

    async def claim_idle(self, min_idle_ms: int, cursor: str, count: int) -> ClaimResult:
        """Take over entries idle longer than ``min_idle_ms`` from any consumer (one page)."""
        reply: Any = await self._client.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_ms, start_id=cursor, count=count
        )
        next_cursor, claimed = _text(reply[0]), reply[1]
        deleted = [_text(entry_id) for entry_id in reply[2]] if len(reply) > 2 else []
        entries = [e for e in _entries(claimed) if e.fields]
        return ClaimResult(entries, deleted, next_cursor)

    async def delivery_counts(self, entries: list[StreamEntry]) -> dict[str, int]:
        """Redis's own delivery counter for each entry (survives any worker's death)."""
        if not entries:
            return {}
        ids = [e.entry_id for e in entries]
        rows: Any = await self._client.xpending_range(
            self.stream,
            self.group,
            min=min(ids, key=_id_key),
            max=max(ids, key=_id_key),
            count=len(ids) * 2 + 10,
            consumername=self.consumer,
        )
        wanted = set(ids)
        return {
            _text(row["message_id"]): int(row["times_delivered"])
            for row in rows
            if _text(row["message_id"]) in wanted
        }


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return (int(ms), int(seq or 0))
