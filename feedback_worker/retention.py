"""Stream retention: trim only what every consumer group has delivered and acknowledged.

A blind length cap (``MAXLEN``) can drop entries nobody has read yet, or entries still pending
after a crash. The safe bound is, over every group, the oldest pending entry, or the entry after
the last one delivered when nothing is pending. Everything below that bound is acked everywhere.
With no group at all nothing is trimmed: a backlog written before the first worker is kept (C03).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio

from feedback_ingest.redis_errors import is_missing_key
from feedback_worker.reader import entry_id_key


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _next_id(entry_id: str) -> str:
    ms, seq = entry_id_key(entry_id)
    return f"{ms}-{seq + 1}"


async def safe_trim_bound(client: redis.asyncio.Redis, stream: str) -> str | None:
    """The lowest entry id that some group still needs, or None when nothing may be trimmed."""
    try:
        groups: Any = await client.xinfo_groups(stream)
    except redis.exceptions.ResponseError as exc:
        if is_missing_key(exc):
            return None
        raise  # a refused check must not look like "nothing to trim"
    if not groups:
        return None
    bounds = []
    for group in groups:
        name = _text(group["name"])
        if int(group["pending"]):
            summary: Any = await client.xpending(stream, name)
            bounds.append(_text(summary["min"]))
        else:
            bounds.append(_next_id(_text(group["last-delivered-id"])))
    return min(bounds, key=entry_id_key)


async def trim_acknowledged(client: redis.asyncio.Redis, stream: str) -> int:
    """Remove the entries below the safe bound; return how many were removed."""
    bound = await safe_trim_bound(client, stream)
    if bound is None or bound == "0-1":
        return 0
    return int(await client.xtrim(stream, minid=bound, approximate=False))
