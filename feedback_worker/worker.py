"""The worker loop: read a batch, decode, coalesce, write, then ack or dead-letter.

This is the one place where the stages meet. Each stage lives in its own module; this class only
orders them, retries what is transient, and stops cleanly:

* the first SIGTERM/SIGINT stops reading; the batch in hand is written and acked, then ``run``
  returns. What cannot be written within ``shutdown_grace_s`` stays pending for a peer to claim;
* a second signal exits the process at once.

The next batch is read while the previous one is being written (one write in flight at most), so
Redis and MongoDB round trips overlap.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pymongo
import redis.asyncio
import redis.exceptions
import structlog
from pymongo import AsyncMongoClient
from pymongo.write_concern import WriteConcern

from feedback_ingest.backoff import compute_backoff_ms
from feedback_ingest.errors import TransientError
from feedback_ingest.redis_errors import DENIED, TRANSIENT, access_denied
from feedback_worker.ack import Finisher
from feedback_worker.clients import async_mongo, async_redis
from feedback_worker.coalesce import newest_per_key
from feedback_worker.consumers import remove_idle_consumers
from feedback_worker.decode import decode_batch
from feedback_worker.entries import DecodedEntry, Rejection, StreamEntry
from feedback_worker.health import HealthReporter, health_key
from feedback_worker.metrics import Metrics
from feedback_worker.reader import PendingEntry, StreamReader, is_nogroup
from feedback_worker.reclaim import plan_claims
from feedback_worker.retention import trim_acknowledged
from feedback_worker.settings import WorkerSettings
from feedback_worker.writer import MongoWriter, WriteOutcome, mongo_access_denied

log = structlog.get_logger(__name__)
T = TypeVar("T")


class ShutdownTimeout(Exception):
    """The grace period ran out while a batch was still being retried."""


class Worker:
    """One consumer of the group. Build it, then ``await run()``; no I/O happens before that."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        redis_client: redis.asyncio.Redis | None = None,
        mongo_client: AsyncMongoClient[dict[str, Any]] | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._redis = redis_client
        self._mongo = mongo_client
        self._handle_signals = handle_signals
        self._stopping = False
        self._deadline: float | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._claim_cursor = "-"
        self._next_claim_at = 0.0
        self._next_trim_at = 0.0

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until asked to stop. Raises ConfigurationError when it is unsafe to start."""
        s = self.settings
        structlog.contextvars.bind_contextvars(stream=s.stream, group=s.group, consumer=s.consumer)
        self._connect()
        if self._handle_signals:
            self._install_signal_handlers()
        log.info("worker_starting", settings=s.redacted())
        try:
            await self._start()
            while not self._stopping:
                await self._poll_iteration()
            await self._finish_inflight()
        except ShutdownTimeout:
            # Stopped while a server was failing: nothing in hand was acked, so it stays pending.
            log.warning("stopped_while_retrying")
        finally:
            if self._inflight is not None:  # cancelled from outside: the batch dies with us
                self._inflight.cancel()
                await asyncio.gather(self._inflight, return_exceptions=True)
            log.info("worker_stopped", **self.metrics.snapshot())
            await self._close()

    def request_stop(self) -> None:
        """Stop reading; finish the batch in hand within the grace period."""
        if not self._stopping:
            self._stopping = True
            self._deadline = time.monotonic() + self.settings.shutdown_grace_s
            log.info("worker_stop_requested", grace_s=self.settings.shutdown_grace_s)

    def _on_signal(self) -> None:
        if self._stopping:
            log.warning("worker_forced_exit")
            os._exit(1)
        self.request_stop()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal)

    def _connect(self) -> None:
        s = self.settings
        if self._redis is None:
            self._redis = async_redis(s)
        if self._mongo is None:
            self._mongo = async_mongo(s)
        w: int | str = int(s.write_concern_w) if s.write_concern_w.isdigit() else s.write_concern_w
        collection = self._mongo[s.database].get_collection(
            s.collection, write_concern=WriteConcern(w=w, j=s.write_concern_journal)
        )
        self._reader = StreamReader(self._redis, s.stream, s.group, s.consumer)
        self._writer = MongoWriter(collection, chunk_events=s.write_chunk_events)
        self._health = HealthReporter(
            self._redis,
            health_key(s.stream, s.consumer),
            interval_s=s.health_interval_s,
            ttl_s=s.health_ttl_s,
        )
        self._finisher = Finisher(
            self._redis,
            stream=s.stream,
            group=s.group,
            dead_stream=s.dead_letter_stream,
            consumer=s.consumer,
        )

    async def _close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        if self._mongo is not None:
            await self._mongo.close()

    async def _start(self) -> None:
        if await self._retry(self._reader.ensure_group):
            log.info("group_created", start_id="0")
        await self._retry(self._writer.ensure_key_index)
        await self._recover_own_pending()

    async def _recover_own_pending(self) -> None:
        """Finish what this consumer name held before a restart, then read only new entries."""
        cursor: str | None = "-"
        while cursor is not None and not self._stopping:
            cursor = await self._reclaim_page(cursor, consumer=self.settings.consumer, idle_ms=0)

    # -- the loop ------------------------------------------------------------------------------

    async def _poll_iteration(self) -> None:
        await self._health.beat(ready=True, counters=dict(self.metrics.counters))
        if time.monotonic() >= self._next_claim_at:
            await self._claim_idle_page()
        if self.settings.trim_interval_s and time.monotonic() >= self._next_trim_at:
            await self._trim()
        s = self.settings
        try:
            batch = await self._retry(self._reader.read_new, s.batch_max_events, s.block_ms)
        except redis.exceptions.ResponseError as exc:
            if not is_nogroup(exc):
                raise
            await self._recreate_group()
            return
        await self._finish_inflight()
        if batch:
            self._inflight = asyncio.create_task(self._handle(batch, {}))

    async def _finish_inflight(self) -> None:
        task, self._inflight = self._inflight, None
        if task is None:
            return
        timeout = None
        if self._deadline is not None:  # stopping: the grace period bounds the wait
            timeout = max(0.0, self._deadline - time.monotonic())
        try:
            await asyncio.wait_for(task, timeout)
        except (ShutdownTimeout, TimeoutError):
            # Not acked, so the entries stay pending and a peer (or this consumer's restart)
            # takes them over; the writes are idempotent if some of them did land.
            log.warning("batch_abandoned_at_shutdown", note="entries stay pending for a peer")

    async def _trim(self) -> None:
        self._next_trim_at = time.monotonic() + self.settings.trim_interval_s
        assert self._redis is not None
        removed = await self._retry(trim_acknowledged, self._redis, self.settings.stream)
        if removed:
            self.metrics.add(trimmed=removed)
            log.info("stream_trimmed", removed=removed)

    async def _recreate_group(self) -> None:
        self.metrics.add(group_recreated=1)
        created = await self._retry(self._reader.ensure_group)
        log.warning("group_missing", recreated=created, start_id="0")
        await self._sleep_backoff(0)

    async def _claim_idle_page(self) -> None:
        """Take over one page of entries that other consumers left idle too long."""
        s = self.settings
        try:
            cursor = await self._reclaim_page(
                self._claim_cursor, consumer=None, idle_ms=s.claim_min_idle_ms
            )
        except redis.exceptions.ResponseError as exc:
            if not is_nogroup(exc):
                raise
            await self._recreate_group()
            cursor = None
        # A full page means there may be more: keep paging on the next iterations.
        self._claim_cursor = cursor or "-"
        wait_s = 0.0 if cursor else s.claim_interval_s
        self._next_claim_at = time.monotonic() + wait_s
        if cursor is None and s.consumer_expiry_ms:
            # A full pass is done: consumers whose entries have all been taken over may go.
            await self._remove_idle_consumers()

    async def _remove_idle_consumers(self) -> None:
        assert self._redis is not None
        s = self.settings
        removed = await self._retry(
            remove_idle_consumers,
            self._redis,
            s.stream,
            s.group,
            s.consumer_expiry_ms,
            s.consumer,
        )
        if removed:
            self.metrics.add(consumers_removed=len(removed))
            log.info("idle_consumers_removed", consumers=removed)

    async def _reclaim_page(self, cursor: str, *, consumer: str | None, idle_ms: int) -> str | None:
        """Claim and handle one page of pending entries; return the next cursor, None at the end."""
        page_size = self.settings.claim_page_events
        rows = await self._retry(self._reader.pending_page, cursor, page_size, idle_ms, consumer)
        if not rows:
            return None
        await self._finish_inflight()
        plan = plan_claims(rows, self.settings.max_deliveries)
        await self._claim_and_handle(plan.dead, idle_ms, exhausted=True)
        await self._claim_and_handle(plan.together, idle_ms)
        for row in plan.alone:
            await self._claim_and_handle([row], idle_ms)
        return rows[-1].entry_id if len(rows) == page_size else None

    async def _claim_and_handle(
        self, rows: list[PendingEntry], idle_ms: int, *, exhausted: bool = False
    ) -> None:
        if not rows:
            return
        entries, gone = await self._retry(self._reader.claim, [r.entry_id for r in rows], idle_ms)
        if gone:
            self.metrics.add(lost_before_processing=len(gone))
            log.warning("claimed_entries_gone", count=len(gone), note="trimmed or deleted")
        self.metrics.add(claimed=len(entries))
        deliveries = {r.entry_id: r.deliveries + 1 for r in rows}  # the claim was one more
        if exhausted:
            limit = self.settings.max_deliveries
            rejections = [
                Rejection(e, f"entry: delivered {deliveries[e.entry_id] - 1} times (max {limit})")
                for e in entries
            ]
            await self._retry(self._finisher.finish, [], rejections, deliveries)
            self.metrics.add(dead_lettered=len(rejections))
            log.warning("poison_entries_dead_lettered", count=len(rejections))
        elif entries:
            await self._handle(entries, deliveries)

    # -- one batch -----------------------------------------------------------------------------

    async def _handle(self, entries: list[StreamEntry], deliveries: dict[str, int]) -> None:
        started = time.monotonic()
        decoded, rejected = decode_batch(entries)
        lease = asyncio.create_task(self._keep_ownership([e.entry_id for e in entries]))
        try:
            acked, failed, outcome = await self._write_all(decoded)
        finally:
            lease.cancel()
        rejections = [*rejected, *failed]
        await self._retry(self._finisher.finish, acked, rejections, deliveries)
        self._record(entries, acked, rejections, outcome, started)

    async def _keep_ownership(self, ids: list[str]) -> None:
        """While a batch is being written, refresh its entries well before peers may claim them."""
        interval_s = self.settings.claim_min_idle_ms / 3000
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._reader.refresh(ids)
            except (*TRANSIENT, redis.exceptions.ResponseError) as exc:
                log.warning("ownership_refresh_failed", error=str(exc))

    async def _write_all(
        self, decoded: list[DecodedEntry]
    ) -> tuple[list[str], list[Rejection], WriteOutcome]:
        """Write the newest event per key; when one is refused, its key's older events go next."""
        acked: list[str] = []
        failed: list[Rejection] = []
        total = WriteOutcome()
        remaining = decoded
        while remaining:
            newest, superseded = newest_per_key(remaining)
            outcome = await self._retry(self._writer.write, list(newest.values()))
            total.merge(outcome)
            remaining = []
            for key, item in newest.items():
                reason = outcome.failed.get(item.entry.entry_id)
                if reason is None:
                    acked.append(item.entry.entry_id)
                    acked.extend(older.entry.entry_id for older in superseded.get(key, []))
                else:
                    failed.append(Rejection(item.entry, reason))
                    remaining.extend(superseded.get(key, []))
        return acked, failed, total

    def _record(
        self,
        entries: list[StreamEntry],
        acked: list[str],
        rejections: list[Rejection],
        outcome: WriteOutcome,
        started: float,
    ) -> None:
        now_ms = time.time() * 1000
        acked_set = set(acked)
        for entry in entries:
            if entry.entry_id in acked_set:
                self.metrics.e2e_latency.observe(now_ms - entry.received_ms)
        self.metrics.add(
            read=len(entries),
            acked=len(acked),
            written=outcome.written,
            stale=outcome.stale,
            dead_lettered=len(rejections),
            batches=1,
        )
        log.info(
            "batch",
            read=len(entries),
            written=outcome.written,
            stale=outcome.stale,
            superseded=len(acked) - outcome.written - outcome.stale,
            dead_lettered=len(rejections),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )

    # -- retries -------------------------------------------------------------------------------

    async def _retry(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Call ``fn`` until it succeeds, backing off on transient failures.

        After a stop request, retrying ends at the grace deadline (ShutdownTimeout); the entries
        involved are not acked, so they stay pending for a peer.
        """
        attempt = 0
        while True:
            try:
                return await fn(*args)
            except DENIED as exc:  # a wrong secret or ACL: exit, so a restart reads it again
                raise access_denied(exc) from exc
            except pymongo.errors.OperationFailure as exc:
                denied = mongo_access_denied(exc)
                if denied is None:
                    raise
                raise denied from exc
            except (TransientError, *TRANSIENT, pymongo.errors.ConnectionFailure) as exc:
                self.metrics.add(transient_errors=1)
                if attempt == 0 or attempt % 10 == 0:
                    log.warning(
                        "transient_error", call=fn.__name__, attempt=attempt, error=str(exc)
                    )
                await self._health.beat(ready=False, counters=dict(self.metrics.counters))
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    raise ShutdownTimeout from exc
                await self._sleep_backoff(attempt)
                attempt += 1

    async def _sleep_backoff(self, attempt: int) -> None:
        s = self.settings
        delay_s = compute_backoff_ms(attempt, base_ms=s.backoff_base_ms, cap_ms=s.backoff_cap_ms)
        await asyncio.sleep(delay_s / 1000)
