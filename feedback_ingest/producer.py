"""Producers: validate feedback events and append them to the Redis stream.

``FeedbackProducer`` is for threaded code, ``AsyncFeedbackProducer`` for asyncio. Both validate
before anything is sent (:class:`InvalidEvent` names the field and the reason), let Redis assign
the entry id, and retry connection failures a bounded number of times with backoff before raising
:class:`RedisUnavailable`. Nothing is dropped silently: ``submit`` either returns the event id of
an entry Redis has accepted, or raises.

Delivery is at least once: a retry after a lost reply may append the same event twice. That is
harmless, because the worker's write is idempotent per event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any, Self

import redis
import redis.asyncio
import redis.exceptions

from feedback_ingest import defaults
from feedback_ingest.backoff import compute_backoff_ms
from feedback_ingest.errors import InvalidEvent, RedisUnavailable
from feedback_ingest.wire import FeedbackEvent, encode_event

#: redis-py's TimeoutError is not a ConnectionError; both mean "try again".
_TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

EventLike = FeedbackEvent | Mapping[str, Any]


def _as_events(events: Iterable[EventLike]) -> list[FeedbackEvent]:
    prepared = []
    for index, item in enumerate(events):
        if isinstance(item, FeedbackEvent):
            prepared.append(item)
            continue
        try:
            prepared.append(FeedbackEvent.create(**item))
        except InvalidEvent as exc:
            raise InvalidEvent(f"[{index}].{exc.field}", exc.code, exc.detail) from None
        except TypeError as exc:
            raise InvalidEvent(f"[{index}]", "bad_arguments", str(exc)) from None
    return prepared


def _unavailable(attempts: int, exc: Exception) -> RedisUnavailable:
    return RedisUnavailable(f"Redis did not accept the events after {attempts} attempts: {exc}")


def _decode_id(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


class _ProducerSettings:
    """What both producers hold: the client, the stream and the retry budget."""

    def __init__(
        self,
        client: Any,
        *,
        stream: str = defaults.STREAM,
        attempts: int = defaults.PRODUCER_ATTEMPTS,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self._client = client
        self.stream = stream
        self._attempts = attempts


class FeedbackProducer(_ProducerSettings):
    """Synchronous producer. Safe to share between threads (redis-py pools connections).

    Takes a ``redis.Redis`` client; ``stream`` and ``attempts`` (first try included) are optional.
    """

    _client: redis.Redis

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """Connect lazily to ``url`` (``redis://`` or ``rediss://``)."""
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, **kwargs)

    def submit(self, **fields: Any) -> str:
        """Validate one event (keywords of ``FeedbackEvent.create``), append it, return its id."""
        event = FeedbackEvent.create(**fields)
        self._send([event])
        return event.event_id

    def submit_many(self, events: Iterable[EventLike]) -> list[str]:
        """Validate every event first, then append them all in one pipelined round trip."""
        prepared = _as_events(events)
        if prepared:
            self._send(prepared)
        return [event.event_id for event in prepared]

    def _send(self, events: list[FeedbackEvent]) -> list[str]:
        for attempt in range(self._attempts):
            try:
                pipe = self._client.pipeline(transaction=False)
                for event in events:
                    pipe.xadd(self.stream, encode_event(event))  # type: ignore[arg-type]
                return [_decode_id(entry_id) for entry_id in pipe.execute()]
            except _TRANSIENT as exc:
                if attempt + 1 == self._attempts:
                    raise _unavailable(self._attempts, exc) from exc
                time.sleep(compute_backoff_ms(attempt) / 1000)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncFeedbackProducer(_ProducerSettings):
    """asyncio producer with the same contract as :class:`FeedbackProducer`."""

    _client: redis.asyncio.Redis

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        client = redis.asyncio.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, **kwargs)

    async def submit(self, **fields: Any) -> str:
        event = FeedbackEvent.create(**fields)
        await self._send([event])
        return event.event_id

    async def submit_many(self, events: Iterable[EventLike]) -> list[str]:
        prepared = _as_events(events)
        if prepared:
            await self._send(prepared)
        return [event.event_id for event in prepared]

    async def _send(self, events: list[FeedbackEvent]) -> list[str]:
        for attempt in range(self._attempts):
            try:
                pipe = self._client.pipeline(transaction=False)
                for event in events:
                    pipe.xadd(self.stream, encode_event(event))  # type: ignore[arg-type]
                return [_decode_id(entry_id) for entry_id in await pipe.execute()]
            except _TRANSIENT as exc:
                if attempt + 1 == self._attempts:
                    raise _unavailable(self._attempts, exc) from exc
                await asyncio.sleep(compute_backoff_ms(attempt) / 1000)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
