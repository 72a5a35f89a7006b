"""Safe retention: trimming never removes an entry that any group has not acknowledged."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio

from feedback_worker.retention import safe_trim_bound, trim_acknowledged

pytestmark = pytest.mark.integration


async def test_trim_keeps_pending_and_undelivered_entries_of_every_group(
    names: dict[str, str], aredis: redis.asyncio.Redis
) -> None:
    stream = names["stream"]
    ids = [(await aredis.xadd(stream, {"n": str(i)})).decode() for i in range(100)]
    assert await safe_trim_bound(aredis, stream) is None  # no group yet: the backlog stays
    await aredis.xgroup_create(stream, "fast", id="0")
    await aredis.xgroup_create(stream, "slow", id="0")
    await aredis.xreadgroup("fast", "c", {stream: ">"}, count=60)
    await aredis.xack(stream, "fast", *ids[:50])  # entries 50-59 stay pending
    await aredis.xreadgroup("slow", "c", {stream: ">"}, count=70)
    await aredis.xack(stream, "slow", *ids[:70])  # all delivered entries acked
    assert await safe_trim_bound(aredis, stream) == ids[50]
    assert await trim_acknowledged(aredis, stream) == 50
    remaining: Any = await aredis.xrange(stream)
    assert [e[0].decode() for e in remaining] == ids[50:]
    await aredis.xack(stream, "fast", *ids[50:60])
    await trim_acknowledged(aredis, stream)
    remaining = await aredis.xrange(stream)
    # "fast" was delivered up to 59 and acked; "slow" needs everything after 69.
    assert remaining[0][0].decode() == ids[60]
