"""Finishing a batch: dead-letter XADDs and XACKs in one MULTI/EXEC transaction."""

from __future__ import annotations

import redis.asyncio

from feedback_worker.deadletter import dead_letter_fields
from feedback_worker.entries import Rejection


class Finisher:
    """Acknowledges durable entries and moves rejected ones to the dead-letter stream.

    The dead-letter stream shares the stream's hash slot, so a rejected entry's XADD and its XACK
    commit together or not at all: an entry is never both lost and acked, nor dead-lettered twice
    by one finish.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        stream: str,
        group: str,
        dead_stream: str,
        consumer: str,
    ) -> None:
        self._client = client
        self._stream = stream
        self._group = group
        self._dead_stream = dead_stream
        self._consumer = consumer

    async def finish(
        self, ack_ids: list[str], rejections: list[Rejection], deliveries: dict[str, int]
    ) -> None:
        if not ack_ids and not rejections:
            return
        pipe = self._client.pipeline(transaction=True)
        for rejection in rejections:
            fields = dead_letter_fields(
                rejection,
                stream=self._stream,
                group=self._group,
                consumer=self._consumer,
                deliveries=deliveries.get(rejection.entry.entry_id, 1),
            )
            pipe.xadd(self._dead_stream, fields)  # type: ignore[arg-type]
        ids = [*ack_ids, *(r.entry.entry_id for r in rejections)]
        pipe.xack(self._stream, self._group, *ids)
        await pipe.execute()
