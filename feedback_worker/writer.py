"""Writing a batch to MongoDB: one unordered bulk write of idempotent last-writer-wins upserts.

Each key's document is addressed by its deterministic ``_id`` (a hash of the key) and updated with
``$max`` on one sub-document, ``latest``, whose first fields are the event time and the event id:

    {"$setOnInsert": {key fields, createdAt},
     "$max": {"latest": {eventTime, eventId, value, metadata, receivedAt}}}   upsert=True

BSON compares sub-documents field by field in order, so ``$max`` replaces ``latest`` exactly when
the incoming event is newer under the ordering rule, atomically on the server. A stale or
redelivered event simply does not modify the document: it never raises an error, so no error's
position is ever needed to tell "stale" from "failed".

When the server does report an error, the reply is not trusted to say which statements ran (one
MongoDB-protocol server stops at the first error and reports index 0). Because every statement is
idempotent, the writer re-sends: it splits the failing group in halves until each error is pinned
to one statement, which is then retried (a duplicate-key race on a new key) or rejected alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pymongo.errors
import structlog
from bson.datetime_ms import DatetimeMS
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from feedback_ingest import defaults
from feedback_ingest.errors import AccessDenied, ConfigurationError, MongoUnavailable
from feedback_ingest.wire import KEY_FIELDS, document_id
from feedback_worker.entries import DecodedEntry

log = structlog.get_logger(__name__)

KEY_INDEX = [(name, ASCENDING) for name in KEY_FIELDS]

#: Server error codes that mean "the write may succeed later": never a reason to dead-letter.
TRANSIENT_CODES = frozenset(
    {6, 7, 50, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 64}
)
DUPLICATE_KEY = 11000
#: Unauthorized, AuthenticationFailed: the account is wrong, not the event.
DENIED_CODES = frozenset({13, 18})
#: How often one statement is re-sent after a duplicate-key race before it counts as failed.
DUPLICATE_RETRIES = 3

Document = dict[str, Any]


@dataclass
class WriteOutcome:
    """What a bulk write achieved: counts, and the entries MongoDB refused (id -> reason)."""

    written: int = 0
    stale: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def merge(self, other: WriteOutcome) -> None:
        self.written += other.written
        self.stale += other.stale
        self.failed.update(other.failed)


def upsert_for(item: DecodedEntry, now: datetime) -> UpdateOne:
    """The one statement that lands ``item``'s event (see the module docstring)."""
    event = item.event
    return UpdateOne(
        {"_id": document_id(event.key)},
        {
            "$setOnInsert": {
                "userId": event.user_id,
                "agentId": event.agent_id,
                "sourceId": event.source_id,
                "source": event.source,
                "createdAt": now,
            },
            "$max": {
                "latest": {
                    "eventTime": DatetimeMS(event.event_time_ms),
                    "eventId": event.event_id,
                    "value": event.value,
                    "metadata": event.metadata,
                    "receivedAt": DatetimeMS(item.entry.received_ms),
                }
            },
        },
        upsert=True,
    )


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, pymongo.errors.BulkWriteError):
        details = exc.details or {}
        if details.get("writeConcernErrors"):
            return True
        codes = {error.get("code") for error in details.get("writeErrors", [])}
        return bool(codes) and codes <= TRANSIENT_CODES
    if isinstance(exc, pymongo.errors.ConnectionFailure | pymongo.errors.WTimeoutError):
        return True
    if isinstance(exc, pymongo.errors.OperationFailure):
        return exc.code in TRANSIENT_CODES
    return isinstance(exc, pymongo.errors.PyMongoError) and "timed out" in str(exc)


def mongo_access_denied(exc: Exception) -> AccessDenied | None:
    """The named error when MongoDB refused the account, else None.

    Checked before anything else: a refused account must stop the worker, never turn every event
    of the batch into a dead letter.
    """
    codes: set[Any] = set()
    if isinstance(exc, pymongo.errors.BulkWriteError):
        codes = {error.get("code") for error in (exc.details or {}).get("writeErrors", [])}
    elif isinstance(exc, pymongo.errors.OperationFailure):
        codes = {exc.code}
    if codes & DENIED_CODES:
        return AccessDenied(f"MongoDB refused the account or command: {exc}")
    return None


def _is_duplicate_key(exc: Exception) -> bool:
    if isinstance(exc, pymongo.errors.BulkWriteError):
        errors = (exc.details or {}).get("writeErrors", [])
        return bool(errors) and all(e.get("code") == DUPLICATE_KEY for e in errors)
    return isinstance(exc, pymongo.errors.DuplicateKeyError) or "E11000" in str(exc)


def _reason(exc: Exception) -> str:
    if isinstance(exc, pymongo.errors.BulkWriteError):
        errors = (exc.details or {}).get("writeErrors", [])
        if errors:
            return f"write rejected: {errors[0].get('errmsg', '')} [code {errors[0].get('code')}]"
    return f"write rejected: {type(exc).__name__}: {exc}"[:500]


class MongoWriter:
    """Owns the collection's write path: the key index and the guarded bulk upserts."""

    def __init__(self, collection: AsyncCollection[Document], *, chunk_events: int) -> None:
        self._collection = collection
        self._chunk_events = chunk_events

    async def ensure_key_index(self) -> None:
        """Create the unique compound index on the four key fields, or verify it exists.

        The worker refuses to run without it: it is what keeps one document per key for every
        other client that writes or reads by the natural key.
        """
        try:
            await self._collection.create_index(
                KEY_INDEX, unique=True, name=defaults.KEY_INDEX_NAME
            )
        except pymongo.errors.OperationFailure as exc:
            log.warning("key_index_create_failed", error=str(exc))
        indexes = [index async for index in await self._collection.list_indexes()]
        for index in indexes:
            if index.get("unique") and list(index["key"].items()) == KEY_INDEX:
                return
        raise ConfigurationError(
            f"collection {self._collection.full_name} has no unique index on {list(KEY_FIELDS)}"
        )

    async def write(self, items: list[DecodedEntry]) -> WriteOutcome:
        """Land every item (at most one per key) or raise :class:`MongoUnavailable`.

        Statements the server refuses for good are reported in ``WriteOutcome.failed``.
        """
        if not items:
            return WriteOutcome()
        now = datetime.now(UTC)
        group = [(item, upsert_for(item, now)) for item in items]
        outcome = WriteOutcome()
        for start in range(0, len(group), self._chunk_events):
            outcome.merge(await self._write_group(group[start : start + self._chunk_events]))
        return outcome

    async def _write_group(
        self, group: list[tuple[DecodedEntry, UpdateOne]], attempt: int = 0
    ) -> WriteOutcome:
        try:
            result = await self._collection.bulk_write([op for _, op in group], ordered=False)
        except Exception as exc:  # every failure is classified below
            denied = mongo_access_denied(exc)
            if denied is not None:
                raise denied from exc
            if _is_transient(exc):
                raise MongoUnavailable(f"MongoDB write failed transiently: {exc}") from exc
            return await self._split(group, exc, attempt)
        matched = result.matched_count
        modified = result.modified_count
        return WriteOutcome(written=modified + result.upserted_count, stale=matched - modified)

    async def _split(
        self, group: list[tuple[DecodedEntry, UpdateOne]], exc: Exception, attempt: int
    ) -> WriteOutcome:
        if len(group) > 1:
            middle = len(group) // 2
            outcome = await self._write_group(group[:middle])
            outcome.merge(await self._write_group(group[middle:]))
            return outcome
        item = group[0][0]
        if _is_duplicate_key(exc) and attempt < DUPLICATE_RETRIES:
            # Two writers inserted the same new key at once; the document exists now, so the
            # same statement takes the $max path on the next try (case C06).
            return await self._write_group(group, attempt + 1)
        log.warning("write_rejected", entry_id=item.entry.entry_id, reason=_reason(exc))
        return WriteOutcome(failed={item.entry.entry_id: _reason(exc)})
