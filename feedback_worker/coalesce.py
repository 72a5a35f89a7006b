"""Coalescing a batch: only the newest event per key needs a write."""

from __future__ import annotations

from feedback_worker.entries import DecodedEntry

Key = tuple[str, str, str, str]


def newest_per_key(
    items: list[DecodedEntry],
) -> tuple[dict[Key, DecodedEntry], dict[Key, list[DecodedEntry]]]:
    """Return the newest entry per key and, per key, the entries it supersedes.

    Newest means the largest (event time, event id); the superseded entries are acked once the
    newest one of their key is durable, because it would win over them anyway.
    """
    newest: dict[Key, DecodedEntry] = {}
    superseded: dict[Key, list[DecodedEntry]] = {}
    for item in items:
        key = item.event.key
        current = newest.get(key)
        if current is None:
            newest[key] = item
        elif item.event.order > current.event.order:
            superseded.setdefault(key, []).append(current)
            newest[key] = item
        else:
            superseded.setdefault(key, []).append(item)
    return newest, superseded
