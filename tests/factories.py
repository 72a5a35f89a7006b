"""Builders for test data shared by unit and integration tests."""

from __future__ import annotations

from feedback_ingest.wire import FeedbackEvent
from feedback_worker.entries import DecodedEntry, StreamEntry


def decoded(entry_id: str, user: str, time_ms: int, event_id: str, value: int) -> DecodedEntry:
    """A decoded entry of key (user, "a", "s", "w")."""
    event = FeedbackEvent.create(
        user_id=user, agent_id="a", source_id="s", source="w", value=value,
        event_time=time_ms, event_id=event_id,
    )  # fmt: skip
    return DecodedEntry(StreamEntry(entry_id, {b"x": b"y"}), event)
