"""Wire contract, version 1: how one feedback event travels as a Redis stream entry.

This module is the executable form of ``docs/wire-format.md``; producers encode with it and workers
decode with it, so both ends enforce the same limits. An entry is flat field/value pairs that any
Redis client can write with a plain ``XADD <stream> * field value ...``; Redis assigns the entry id.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final
from uuid import uuid4

from feedback_ingest.errors import InvalidEvent

WIRE_VERSION: Final = "1"

# Field names on the wire.
F_VERSION: Final = "v"
F_USER_ID: Final = "userId"
F_AGENT_ID: Final = "agentId"
F_SOURCE_ID: Final = "sourceId"
F_SOURCE: Final = "source"
F_VALUE: Final = "value"
F_METADATA: Final = "metadata"
F_EVENT_TIME: Final = "eventTime"
F_EVENT_ID: Final = "eventId"

KEY_FIELDS: Final = (F_USER_ID, F_AGENT_ID, F_SOURCE_ID, F_SOURCE)
REQUIRED_FIELDS: Final = (F_VERSION, *KEY_FIELDS, F_VALUE, F_EVENT_TIME, F_EVENT_ID)

# Limits. Each one is checked by producers before XADD and by workers after XREADGROUP.
KEY_FIELD_MAX_BYTES: Final = 256
VALUE_MAX_BYTES: Final = 4_096
METADATA_MAX_BYTES: Final = 16_384
METADATA_MAX_DEPTH: Final = 8
EVENT_ID_MAX_CHARS: Final = 64
ENTRY_MAX_FIELDS: Final = 32
ENTRY_MAX_BYTES: Final = 65_536
EVENT_TIME_MIN_MS: Final = 0
EVENT_TIME_MAX_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

_EVENT_ID_RE: Final = re.compile(r"[A-Za-z0-9_.:-]+")
_EVENT_TIME_RE: Final = re.compile(r"0|[1-9][0-9]{0,14}")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

JsonScalar = None | bool | int | float | str
JsonValue = Any  # a JsonScalar, a list of JsonValue or a dict[str, JsonValue]


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """One validated feedback event. Build it with :meth:`create`, which enforces the contract."""

    user_id: str
    agent_id: str
    source_id: str
    source: str
    value: JsonScalar
    metadata: dict[str, JsonValue]
    event_time_ms: int
    event_id: str

    @classmethod
    def create(
        cls,
        *,
        user_id: str,
        agent_id: str,
        source_id: str,
        source: str,
        value: JsonScalar,
        metadata: Mapping[str, JsonValue] | None = None,
        event_time: datetime | int | None = None,
        event_id: str | None = None,
    ) -> FeedbackEvent:
        """Validate Python inputs and return the event, or raise :class:`InvalidEvent`.

        ``event_time`` is an aware datetime or integer milliseconds since the Unix epoch; ``None``
        means now. A naive datetime is rejected: its zone is ambiguous. ``event_id`` defaults to a
        random UUID (hex).
        """
        for name, text in zip(KEY_FIELDS, (user_id, agent_id, source_id, source), strict=True):
            check_key_field(name, text)
        check_value(value)
        meta = dict(metadata) if metadata is not None else {}
        check_metadata(meta)
        time_ms = event_time_to_ms(event_time)
        eid = uuid4().hex if event_id is None else event_id
        check_event_id(eid)
        return cls(user_id, agent_id, source_id, source, value, meta, time_ms, eid)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The natural key: one MongoDB document per key."""
        return (self.user_id, self.agent_id, self.source_id, self.source)

    @property
    def order(self) -> tuple[int, str]:
        """The ordering rule: later event time wins; equal times go to the larger event id."""
        return (self.event_time_ms, self.event_id)


# ---------------------------------------------------------------------------------------------
# Encoding


def encode_json(value: JsonValue) -> str:
    """Strict, compact JSON: no NaN or Infinity, UTF-8 text kept as is."""
    return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def encode_event(event: FeedbackEvent) -> dict[str, str]:
    """Return the stream entry's field map for ``event`` (already validated by ``create``)."""
    return {
        F_VERSION: WIRE_VERSION,
        F_USER_ID: event.user_id,
        F_AGENT_ID: event.agent_id,
        F_SOURCE_ID: event.source_id,
        F_SOURCE: event.source,
        F_VALUE: encode_json(event.value),
        F_METADATA: encode_json(event.metadata),
        F_EVENT_TIME: str(event.event_time_ms),
        F_EVENT_ID: event.event_id,
    }


def document_id(key: tuple[str, str, str, str]) -> str:
    """The MongoDB ``_id`` of a key's document: SHA-256 (hex) of the key as a JSON array.

    A deterministic ``_id`` makes every write an equality on the primary key, so concurrent
    upserts of a new key cannot create two documents even before the compound index exists.
    """
    return hashlib.sha256(encode_json(list(key)).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_entry(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> FeedbackEvent:
    """Decode and validate one stream entry's field map, or raise :class:`InvalidEvent`.

    Fields the contract does not name are ignored (forward compatibility within version 1), but
    they count towards the entry's size limits.
    """
    text = _entry_as_text(fields)
    version = text.get(F_VERSION)
    if version is None:
        raise InvalidEvent(F_VERSION, "missing", "the wire version field is missing")
    if version != WIRE_VERSION:
        raise InvalidEvent(
            F_VERSION, "unsupported_version", f"version {version!r} is not supported (want 1)"
        )
    for name in REQUIRED_FIELDS:
        if name not in text:
            raise InvalidEvent(name, "missing", "required field is missing")
    for name in KEY_FIELDS:
        check_key_field(name, text[name])
    value = _parse_json(F_VALUE, text[F_VALUE], VALUE_MAX_BYTES)
    if isinstance(value, list | dict):
        raise InvalidEvent(F_VALUE, "bad_type", "value must be a number, string, boolean or null")
    check_value(value)
    metadata: Any = {}
    if F_METADATA in text:
        metadata = _parse_json(F_METADATA, text[F_METADATA], METADATA_MAX_BYTES)
        if not isinstance(metadata, dict):
            raise InvalidEvent(F_METADATA, "bad_type", "metadata must be a JSON object")
        check_metadata(metadata)
    time_text = text[F_EVENT_TIME]
    if not _EVENT_TIME_RE.fullmatch(time_text):
        raise InvalidEvent(
            F_EVENT_TIME, "bad_format", "event time must be decimal integer milliseconds"
        )
    time_ms = int(time_text)
    check_event_time_ms(time_ms)
    check_event_id(text[F_EVENT_ID])
    return FeedbackEvent(
        text[F_USER_ID],
        text[F_AGENT_ID],
        text[F_SOURCE_ID],
        text[F_SOURCE],
        value,
        metadata,
        time_ms,
        text[F_EVENT_ID],
    )


def _entry_as_text(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, str]:
    if len(fields) > ENTRY_MAX_FIELDS:
        raise InvalidEvent("entry", "too_many_fields", f"more than {ENTRY_MAX_FIELDS} fields")
    total = 0
    text: dict[str, str] = {}
    for raw_name, raw_value in fields.items():
        name = _as_text("entry", raw_name)
        value = _as_text(name, raw_value)
        total += _byte_len(raw_name) + _byte_len(raw_value)
        text[name] = value
    if total > ENTRY_MAX_BYTES:
        raise InvalidEvent("entry", "too_large", f"entry is larger than {ENTRY_MAX_BYTES} bytes")
    return text


def _byte_len(raw: bytes | str) -> int:
    return len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)


def _as_text(field: str, raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent(field, "not_utf8", "bytes are not valid UTF-8") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key in object")
    return obj


def _parse_json(field: str, text: str, max_bytes: int) -> Any:
    if len(text.encode()) > max_bytes:
        raise InvalidEvent(field, "too_large", f"encoded size exceeds {max_bytes} bytes")
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_object)
    except RecursionError:
        raise InvalidEvent(field, "too_deep", "JSON nesting is too deep") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise InvalidEvent(field, "bad_json", f"not strict JSON ({exc})") from None


# ---------------------------------------------------------------------------------------------
# Checks shared by both ends


def check_key_field(name: str, text: object) -> None:
    """Key fields: non-empty strings of at most 256 UTF-8 bytes, without control characters."""
    if not isinstance(text, str):
        raise InvalidEvent(name, "bad_type", f"must be a string, not {type(text).__name__}")
    if not text:
        raise InvalidEvent(name, "empty", "must not be empty")
    if len(text.encode("utf-8", "surrogatepass")) > KEY_FIELD_MAX_BYTES:
        raise InvalidEvent(name, "too_long", f"longer than {KEY_FIELD_MAX_BYTES} UTF-8 bytes")
    _check_string(name, text)


def _check_string(field: str, text: str) -> None:
    if _CONTROL_RE.search(text):
        raise InvalidEvent(
            field, "control_char", "contains a control character (U+0000-U+001F or U+007F)"
        )
    _check_string_encodable(field, text)


def check_value(value: object) -> None:
    """The value is a JSON scalar that BSON can hold exactly."""
    if isinstance(value, Decimal):
        raise InvalidEvent(
            F_VALUE,
            "bad_type",
            "Decimal is not accepted: pass float(d) or str(d) so the rounding is your choice",
        )
    if value is not None and not isinstance(value, bool | int | float | str):
        raise InvalidEvent(
            F_VALUE, "bad_type", f"must be a number, string, boolean or null, not {type(value)}"
        )
    _check_json(F_VALUE, value, depth=0, in_array=False)
    # The same measure as the worker's: the size of the value's JSON text on the wire.
    if isinstance(value, str) and len(encode_json(value).encode()) > VALUE_MAX_BYTES:
        raise InvalidEvent(F_VALUE, "too_large", f"encoded size exceeds {VALUE_MAX_BYTES} bytes")


def check_metadata(metadata: object) -> None:
    """Metadata is a JSON object that MongoDB and FerretDB store as one sub-document."""
    if not isinstance(metadata, dict):
        raise InvalidEvent(F_METADATA, "bad_type", "metadata must be a mapping")
    _check_json(F_METADATA, metadata, depth=0, in_array=False)
    try:
        size = len(encode_json(metadata).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(F_METADATA, "bad_json", str(exc)) from None
    if size > METADATA_MAX_BYTES:
        raise InvalidEvent(F_METADATA, "too_large", f"encoded size exceeds {METADATA_MAX_BYTES}")


def _check_json(path: str, value: object, *, depth: int, in_array: bool) -> None:
    if isinstance(value, list | dict):
        _check_container(path, value, depth=depth, in_array=in_array)
    else:
        _check_scalar(path, value)


def _check_scalar(path: str, value: object) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidEvent(path, "int_range", "integer does not fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(path, "not_finite", "NaN and Infinity are not JSON")
    elif isinstance(value, str):
        if "\x00" in value:
            raise InvalidEvent(path, "nul", "strings must not contain NUL")
        _check_string_encodable(path, value)
    else:
        raise InvalidEvent(path, "bad_type", f"{type(value).__name__} is not a JSON type")


def _check_container(
    path: str, value: list[object] | dict[object, object], *, depth: int, in_array: bool
) -> None:
    if depth >= METADATA_MAX_DEPTH:
        raise InvalidEvent(path, "too_deep", f"nesting deeper than {METADATA_MAX_DEPTH} levels")
    if isinstance(value, list):
        if in_array:
            raise InvalidEvent(path, "nested_array", "arrays directly inside arrays are refused")
        for index, item in enumerate(value):
            _check_json(f"{path}[{index}]", item, depth=depth + 1, in_array=True)
        return
    for key, item in value.items():
        _check_metadata_key(path, key)
        _check_json(f"{path}.{key}", item, depth=depth + 1, in_array=False)


def _check_string_encodable(path: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent(path, "not_utf8", "contains a lone surrogate") from None


def _check_metadata_key(path: str, key: object) -> None:
    if not isinstance(key, str):
        raise InvalidEvent(path, "bad_key", f"object keys must be strings, not {type(key)}")
    if not key:
        raise InvalidEvent(path, "bad_key", "object keys must not be empty")
    if key.startswith("$"):
        raise InvalidEvent(path, "bad_key", f"key {key!r} starts with '$' (a MongoDB operator)")
    if "." in key:
        raise InvalidEvent(path, "bad_key", f"key {key!r} contains '.' (a MongoDB path)")
    if "\x00" in key:
        raise InvalidEvent(path, "bad_key", "keys must not contain NUL")
    _check_string_encodable(path, key)


def event_time_to_ms(event_time: datetime | int | None) -> int:
    """Normalise an event time to integer milliseconds since the Unix epoch (UTC).

    Aware datetimes are converted to UTC and truncated to the millisecond; naive ones are refused.
    """
    if event_time is None:
        return int(datetime.now(UTC).timestamp() * 1000)
    if isinstance(event_time, bool) or not isinstance(event_time, int | datetime):
        raise InvalidEvent(
            F_EVENT_TIME, "bad_type", "must be an aware datetime or integer milliseconds"
        )
    if isinstance(event_time, datetime):
        if event_time.tzinfo is None or event_time.utcoffset() is None:
            raise InvalidEvent(
                F_EVENT_TIME, "naive_datetime", "datetime has no time zone; pass an aware one"
            )
        delta = event_time.astimezone(UTC) - _EPOCH
        ms = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    else:
        ms = event_time
    check_event_time_ms(ms)
    return ms


def check_event_time_ms(ms: int) -> None:
    if not EVENT_TIME_MIN_MS <= ms <= EVENT_TIME_MAX_MS:
        raise InvalidEvent(F_EVENT_TIME, "out_of_range", "must be between 1970 and 9999 (UTC)")


def check_event_id(event_id: object) -> None:
    """Event ids are 1-64 characters of ``A-Z a-z 0-9 _ . : -`` (so they sort alike everywhere)."""
    if not isinstance(event_id, str):
        raise InvalidEvent(F_EVENT_ID, "bad_type", "must be a string")
    if not 0 < len(event_id) <= EVENT_ID_MAX_CHARS or not _EVENT_ID_RE.fullmatch(event_id):
        raise InvalidEvent(
            F_EVENT_ID, "bad_format", "must be 1-64 characters of A-Z a-z 0-9 _ . : -"
        )
