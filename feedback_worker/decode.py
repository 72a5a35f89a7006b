"""Decoding a batch: every entry becomes either an event or a rejection with its reason."""

from __future__ import annotations

from feedback_ingest.errors import InvalidEvent
from feedback_ingest.wire import decode_entry
from feedback_worker.entries import DecodedEntry, Rejection, StreamEntry


def decode_batch(entries: list[StreamEntry]) -> tuple[list[DecodedEntry], list[Rejection]]:
    """Split ``entries`` into decoded events and rejections; one bad entry costs only itself."""
    decoded: list[DecodedEntry] = []
    rejected: list[Rejection] = []
    for entry in entries:
        try:
            decoded.append(DecodedEntry(entry, decode_entry(entry.fields)))
        except InvalidEvent as exc:
            rejected.append(Rejection(entry, exc.reason))
        except Exception as exc:  # a decoder bug must not kill the worker
            rejected.append(Rejection(entry, f"entry: undecodable ({type(exc).__name__}: {exc})"))
    return decoded, rejected
