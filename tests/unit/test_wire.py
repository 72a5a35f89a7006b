"""The wire contract: conformance vectors, producer-side validation, and decoder hardening."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedback_ingest.errors import InvalidEvent
from feedback_ingest.wire import (
    FeedbackEvent,
    decode_entry,
    document_id,
    encode_event,
)

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "v1.json").read_text())
CASES = VECTORS["cases"]


def as_dict(event: FeedbackEvent) -> dict[str, Any]:
    return {
        "userId": event.user_id,
        "agentId": event.agent_id,
        "sourceId": event.source_id,
        "source": event.source,
        "value": event.value,
        "metadata": event.metadata,
        "eventTimeMs": event.event_time_ms,
        "eventId": event.event_id,
    }


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vector_decodes_as_documented(case: dict[str, Any]) -> None:
    expect = case["expect"]
    raw = {k.encode(): v.encode("utf-8", "surrogatepass") for k, v in case["fields"].items()}
    if "event" in expect:
        assert as_dict(decode_entry(raw)) == expect["event"]
    else:
        with pytest.raises(InvalidEvent) as info:
            decode_entry(raw)
        assert (info.value.field, info.value.code) == (
            expect["error"]["field"],
            expect["error"]["code"],
        )


@pytest.mark.parametrize(
    "case", [c for c in CASES if "event" in c["expect"]], ids=lambda c: c["name"]
)
def test_python_producer_encodes_accepted_vectors_equivalently(case: dict[str, Any]) -> None:
    e = case["expect"]["event"]
    event = FeedbackEvent.create(
        user_id=e["userId"],
        agent_id=e["agentId"],
        source_id=e["sourceId"],
        source=e["source"],
        value=e["value"],
        metadata=e["metadata"],
        event_time=e["eventTimeMs"],
        event_id=e["eventId"],
    )
    assert decode_entry(encode_event(event)) == event


def make(**overrides: Any) -> FeedbackEvent:
    fields: dict[str, Any] = dict(
        user_id="u1", agent_id="a1", source_id="s1", source="web", value=1
    )
    fields.update(overrides)
    return FeedbackEvent.create(**fields)


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"value": float("nan")}, "value", "not_finite"),
        ({"value": float("inf")}, "value", "not_finite"),
        ({"metadata": {"score": float("inf")}}, "metadata.score", "not_finite"),
        ({"value": Decimal("1.10")}, "value", "bad_type"),
        ({"value": [1]}, "value", "bad_type"),
        ({"metadata": {"$id": "x", "normal": 2}}, "metadata", "bad_key"),
        ({"metadata": {"a.b": 1}}, "metadata", "bad_key"),
        ({"metadata": {"ok": {"x\x00": 1}}}, "metadata.ok", "bad_key"),
        ({"metadata": {"t": (1, 2)}}, "metadata.t", "bad_type"),
        ({"metadata": {"d": Decimal(1)}}, "metadata.d", "bad_type"),
        ({"user_id": ""}, "userId", "empty"),
        ({"agent_id": 7}, "agentId", "bad_type"),
        ({"source": "x" * 257}, "source", "too_long"),
        ({"event_time": datetime(2024, 1, 1)}, "eventTime", "naive_datetime"),
        ({"event_time": -5}, "eventTime", "out_of_range"),
        ({"event_time": 1.5}, "eventTime", "bad_type"),
        ({"event_id": "has space"}, "eventId", "bad_format"),
        ({"value": 2**63}, "value", "int_range"),
        ({"value": "x\x00y"}, "value", "nul"),
        # Measured as the worker measures it: quotes and escapes count.
        ({"value": '"' * 2100}, "value", "too_large"),
    ],
)
def test_producer_rejects_bad_input_naming_the_field(
    overrides: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        make(**overrides)
    assert (info.value.field, info.value.code) == (field, code)
    assert field in str(info.value)


def test_aware_datetime_is_normalised_to_utc_milliseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = make(event_time=datetime(2024, 1, 1, 2, 0, 0, 123_999, tzinfo=plus_two))
    assert event.event_time_ms == int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000) + 123


def test_metadata_round_trips_without_becoming_paths() -> None:
    event = make(metadata={"a": {"b": [1, {"c": "d"}]}, "é": "ü"})
    decoded = decode_entry({k.encode(): v.encode() for k, v in encode_event(event).items()})
    assert decoded.metadata == {"a": {"b": [1, {"c": "d"}]}, "é": "ü"}


def test_non_utf8_bytes_are_rejected_with_the_field_name() -> None:
    raw = {k.encode(): v.encode() for k, v in encode_event(make()).items()}
    raw[b"userId"] = b"\xff\xfe"
    with pytest.raises(InvalidEvent) as info:
        decode_entry(raw)
    assert (info.value.field, info.value.code) == ("userId", "not_utf8")


def test_document_id_depends_on_every_key_field_and_is_unambiguous() -> None:
    base = document_id(("u", "a", "s", "w"))
    assert base == document_id(("u", "a", "s", "w"))
    assert len({base, document_id(("u", "a", "s", "x")), document_id(("ua", "", "s", "w"))}) == 3
    # Joining with a separator would make these two equal; the JSON array keeps them apart.
    assert document_id(("a,b", "c", "d", "e")) != document_id(("a", "b,c", "d", "e"))


field_maps = st.dictionaries(
    st.one_of(
        st.sampled_from(
            [
                "v",
                "userId",
                "agentId",
                "sourceId",
                "source",
                "value",
                "metadata",
                "eventTime",
                "eventId",
            ]
        ),
        st.binary(max_size=8),
    ),
    st.one_of(st.binary(max_size=64), st.sampled_from([b"1", b"{}", b"null", b"NaN", b"[[]]"])),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(field_maps)
def test_decoder_either_decodes_or_raises_invalid_event(fields: dict[Any, bytes]) -> None:
    raw = {k if isinstance(k, bytes) else k.encode(): v for k, v in fields.items()}
    try:
        event = decode_entry(raw)
    except InvalidEvent as exc:
        reason = exc.reason
        assert reason, "a rejection always carries a reason"
        return
    assert all(not k.startswith("$") and "." not in k for k in event.metadata)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_metadata_either_round_trips_or_is_rejected(value: Any) -> None:
    try:
        event = make(metadata={"m": value})
    except InvalidEvent:
        return
    assert decode_entry(encode_event(event)) == event
