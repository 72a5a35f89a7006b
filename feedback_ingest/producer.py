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
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Self, TypeVar

import redis
import redis.asyncio
import redis.exceptions

from feedback_ingest import defaults
from feedback_ingest.backoff import compute_backoff_ms
from feedback_ingest.errors import BacklogFull, InvalidEvent, RedisUnavailable
from feedback_ingest.redis_errors import DENIED, TRANSIENT, access_denied, is_missing_key
from feedback_ingest.wire import FeedbackEvent, encode_event

EventLike = FeedbackEvent | Mapping[str, Any]
T = TypeVar("T")


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


def _client_options(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Short timeouts by default: a producer runs inside request handlers."""
    return {"socket_timeout": 5, "socket_connect_timeout": 5, **(given or {})}


def _decode_id(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def backlog_size(groups: list[dict[Any, Any]], stream_length: int) -> int:
    """Entries not yet acknowledged by the slowest group (the whole stream when none exists)."""
    if not groups:
        return stream_length
    sizes = []
    for group in groups:
        lag = group.get("lag")
        sizes.append((stream_length if lag is None else int(lag)) + int(group["pending"]))
    return max(sizes)


class _ProducerSettings:
    """What both producers hold: the client, the stream, the retry budget and the backlog bound.

    With ``max_backlog`` set, a submit first checks (at most every ``BACKLOG_CHECK_S``) how many
    entries the slowest consumer group has not acknowledged. Above the bound it waits up to
    ``backlog_wait_s`` for workers to catch up, then raises :class:`BacklogFull`; nothing is ever
    dropped and nothing is buffered in the producer.
    """

    BACKLOG_CHECK_S = 0.5

    def __init__(
        self,
        client: Any,
        *,
        stream: str = defaults.STREAM,
        attempts: int = defaults.PRODUCER_ATTEMPTS,
        max_backlog: int | None = None,
        backlog_wait_s: float = 0.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        if max_backlog is not None and max_backlog < 1:
            raise ValueError("max_backlog must be >= 1")
        self._client = client
        self.stream = stream
        self._attempts = attempts
        self._max_backlog = max_backlog
        self._backlog_wait_s = backlog_wait_s
        self._backlog_ok_until = 0.0

    def _backlog_check_due(self) -> bool:
        return self._max_backlog is not None and time.monotonic() >= self._backlog_ok_until

    def _pause_for_backlog(self, size: int, deadline: float, attempt: int) -> float | None:
        """None when there is room; else how long to wait, or BacklogFull once time is up."""
        assert self._max_backlog is not None
        if size < self._max_backlog:
            self._backlog_ok_until = time.monotonic() + self.BACKLOG_CHECK_S
            return None
        if time.monotonic() >= deadline:
            raise BacklogFull(
                f"stream {self.stream!r} holds {size} unacknowledged entries "
                f"(max {self._max_backlog})"
            )
        return min(compute_backoff_ms(attempt) / 1000, self._backlog_wait_s)


class FeedbackProducer(_ProducerSettings):
    """Synchronous producer. Safe to share between threads (redis-py pools connections).

    Takes a ``redis.Redis`` client; ``stream`` and ``attempts`` (first try included) are optional.
    """

    _client: redis.Redis

    @classmethod
    def from_url(
        cls, url: str, *, client_options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Self:
        """Connect lazily to ``url`` (``redis://``, or ``rediss://`` for TLS).

        ``client_options`` go to redis-py as given: for TLS, ``ssl_ca_certs`` (the CA that signs
        the server), ``ssl_certfile`` and ``ssl_keyfile`` (a client certificate). The other
        keywords are the producer's own.
        """
        client = redis.Redis.from_url(url, **_client_options(client_options))
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

    def _wait_for_room(self) -> None:
        if not self._backlog_check_due():
            return
        deadline = time.monotonic() + self._backlog_wait_s
        for attempt in itertools.count():
            pause = self._pause_for_backlog(self._with_retries(self._backlog), deadline, attempt)
            if pause is None:
                return
            time.sleep(pause)

    def _backlog(self) -> int:
        try:
            groups: Any = self._client.xinfo_groups(self.stream)
            return backlog_size(groups, int(self._client.xlen(self.stream)))
        except redis.exceptions.ResponseError as exc:
            if is_missing_key(exc):  # no stream yet: nothing is waiting
                return 0
            raise  # never skip the bound because the account cannot see it

    def _append(self, events: list[FeedbackEvent]) -> list[str]:
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(self.stream, encode_event(event))  # type: ignore[arg-type]
        return [_decode_id(entry_id) for entry_id in pipe.execute()]

    def _with_retries(self, call: Callable[[], T]) -> T:
        for attempt in range(self._attempts):
            try:
                return call()
            except DENIED as exc:
                raise access_denied(exc) from exc
            except TRANSIENT as exc:
                if attempt + 1 == self._attempts:
                    raise _unavailable(self._attempts, exc) from exc
                time.sleep(compute_backoff_ms(attempt) / 1000)
        raise AssertionError("unreachable")

    def _send(self, events: list[FeedbackEvent]) -> list[str]:
        self._wait_for_room()
        return self._with_retries(lambda: self._append(events))

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
    def from_url(
        cls, url: str, *, client_options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Self:
        """As :meth:`FeedbackProducer.from_url`."""
        client = redis.asyncio.Redis.from_url(url, **_client_options(client_options))
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

    async def _wait_for_room(self) -> None:
        if not self._backlog_check_due():
            return
        deadline = time.monotonic() + self._backlog_wait_s
        for attempt in itertools.count():
            size = await self._with_retries(self._backlog)
            pause = self._pause_for_backlog(size, deadline, attempt)
            if pause is None:
                return
            await asyncio.sleep(pause)

    async def _backlog(self) -> int:
        try:
            groups: Any = await self._client.xinfo_groups(self.stream)
            return backlog_size(groups, int(await self._client.xlen(self.stream)))
        except redis.exceptions.ResponseError as exc:
            if is_missing_key(exc):  # no stream yet: nothing is waiting
                return 0
            raise  # never skip the bound because the account cannot see it

    async def _append(self, events: list[FeedbackEvent]) -> list[str]:
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(self.stream, encode_event(event))  # type: ignore[arg-type]
        return [_decode_id(entry_id) for entry_id in await pipe.execute()]

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(self._attempts):
            try:
                return await call()
            except DENIED as exc:
                raise access_denied(exc) from exc
            except TRANSIENT as exc:
                if attempt + 1 == self._attempts:
                    raise _unavailable(self._attempts, exc) from exc
                await asyncio.sleep(compute_backoff_ms(attempt) / 1000)
        raise AssertionError("unreachable")

    async def _send(self, events: list[FeedbackEvent]) -> list[str]:
        await self._wait_for_room()
        return await self._with_retries(lambda: self._append(events))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
