"""feedback-ingest: validate user feedback and append it to a Redis stream (wire contract v1)."""

from feedback_ingest.errors import (
    AccessDenied,
    BacklogFull,
    ConfigurationError,
    FeedbackError,
    InvalidEvent,
    PermanentError,
    RedisUnavailable,
    TransientError,
)
from feedback_ingest.producer import AsyncFeedbackProducer, FeedbackProducer
from feedback_ingest.wire import WIRE_VERSION, FeedbackEvent, decode_entry, encode_event

__all__ = [
    "WIRE_VERSION",
    "AccessDenied",
    "AsyncFeedbackProducer",
    "BacklogFull",
    "ConfigurationError",
    "FeedbackError",
    "FeedbackEvent",
    "FeedbackProducer",
    "InvalidEvent",
    "PermanentError",
    "RedisUnavailable",
    "TransientError",
    "decode_entry",
    "encode_event",
]
