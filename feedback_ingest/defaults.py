"""Names and defaults shared by producers and workers: the one place to look them up."""

from __future__ import annotations

#: Redis stream that producers append to and workers read from.
STREAM = "feedback"

#: Consumer group that every worker joins.
GROUP = "feedback-workers"

#: MongoDB database and collection that hold one document per feedback key.
DATABASE = "feedback"
COLLECTION = "feedback"

#: Name of the unique compound index on the four key fields.
KEY_INDEX_NAME = "feedback_key_unique"

#: Redis URL used when none is configured (a local development server).
REDIS_URL = "redis://127.0.0.1:6379/0"

#: MongoDB URI used when none is configured (a local development server).
MONGODB_URI = "mongodb://127.0.0.1:27017/"

#: Attempts a producer makes before raising RedisUnavailable (first try included).
PRODUCER_ATTEMPTS = 5

#: Backoff for every retry in the project: first delay, and the cap, in milliseconds.
BACKOFF_BASE_MS = 50
BACKOFF_CAP_MS = 5_000


def dead_letter_stream_for(stream: str) -> str:
    """Return the dead-letter stream of ``stream``, in the same Redis Cluster hash slot.

    A key without braces hashes as a whole, so ``{feedback}:dead`` shares the slot of ``feedback``;
    a stream that already carries a hash tag keeps it. The same slot lets the dead-letter XADD and
    the XACK of an entry run in one MULTI/EXEC transaction on a cluster too.
    """
    # Redis Cluster hashes the text between the first "{" and the next "}", if it is not empty.
    start = stream.find("{")
    end = stream.find("}", start + 1) if start >= 0 else -1
    if start >= 0 and end > start + 1:
        return f"{stream}:dead"
    if "{" in stream or "}" in stream:
        raise ValueError(f"stream name {stream!r} has braces but no hash tag: use '{{tag}}:name'")
    return f"{{{stream}}}:dead"
