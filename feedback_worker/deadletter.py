"""The dead-letter entry format: the original fields, kept byte for byte, plus why and when."""

from __future__ import annotations

import time

from feedback_worker.entries import Rejection

#: Prefix of the original entry's fields inside a dead-letter entry (no clash with ours).
ORIGINAL_PREFIX = b"field:"


def dead_letter_fields(
    rejection: Rejection, *, stream: str, group: str, consumer: str, deliveries: int
) -> dict[bytes, bytes]:
    """Field map of the dead-letter entry for ``rejection``."""
    fields: dict[bytes, bytes] = {
        b"reason": rejection.reason.encode(),
        b"entryId": rejection.entry.entry_id.encode(),
        b"stream": stream.encode(),
        b"group": group.encode(),
        b"consumer": consumer.encode(),
        b"deliveries": str(deliveries).encode(),
        b"deadLetteredAt": str(int(time.time() * 1000)).encode(),
    }
    for name, value in rejection.entry.fields.items():
        fields[ORIGINAL_PREFIX + name] = value
    return fields


def original_fields(dead_fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The entry as its producer wrote it, recovered from a dead-letter entry."""
    size = len(ORIGINAL_PREFIX)
    return {k[size:]: v for k, v in dead_fields.items() if k.startswith(ORIGINAL_PREFIX)}
