"""Coalescing, backoff, settings and metrics: the pure pieces of the worker."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from feedback_ingest.backoff import compute_backoff_ms
from feedback_ingest.defaults import dead_letter_stream_for
from feedback_worker.coalesce import newest_per_key
from feedback_worker.metrics import LatencyHistogram
from feedback_worker.settings import WorkerSettings, redact_url
from tests.factories import decoded


def test_newest_per_key_uses_event_time_then_event_id_not_arrival() -> None:
    items = [
        decoded("1-0", "u1", 200, "b", 2),
        decoded("2-0", "u1", 100, "z", 1),  # arrives later, older event time
        decoded("3-0", "u1", 200, "a", 3),  # same time, smaller event id
        decoded("4-0", "u2", 50, "x", 9),
    ]
    newest, superseded = newest_per_key(items)
    assert newest[("u1", "a", "s", "w")].entry.entry_id == "1-0"
    assert sorted(i.entry.entry_id for i in superseded[("u1", "a", "s", "w")]) == ["2-0", "3-0"]
    assert newest[("u2", "a", "s", "w")].event.value == 9
    assert ("u2", "a", "s", "w") not in superseded


def test_newest_per_key_is_independent_of_order() -> None:
    items = [
        decoded(f"{i}-0", "u", t, e, i)
        for i, (t, e) in enumerate([(5, "a"), (7, "b"), (7, "c"), (6, "z")])
    ]
    for seed in range(20):
        random.Random(seed).shuffle(items)
        newest, _ = newest_per_key(items)
        assert newest[("u", "a", "s", "w")].event.order == (7, "c")


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    first = [compute_backoff_ms(0, base_ms=100, cap_ms=1000, rng=rng) for _ in range(50)]
    late = [compute_backoff_ms(20, base_ms=100, cap_ms=1000, rng=rng) for _ in range(50)]
    assert all(50 <= d <= 100 for d in first)
    assert all(500 <= d <= 1000 for d in late)
    assert len(set(late)) > 1


def test_socket_timeout_must_outlast_twice_the_block_time() -> None:
    with pytest.raises(ValidationError, match="redis_socket_timeout_s"):
        WorkerSettings(block_ms=10_000, redis_socket_timeout_s=12)
    assert WorkerSettings(block_ms=10_000, redis_socket_timeout_s=21).block_ms == 10_000


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDBACK_STREAM", "fb-x")
    monkeypatch.setenv("FEEDBACK_BATCH_MAX_EVENTS", "77")
    settings = WorkerSettings()
    assert (settings.stream, settings.batch_max_events) == ("fb-x", 77)
    assert settings.dead_letter_stream == "{fb-x}:dead"


def test_passwords_never_reach_the_redacted_settings() -> None:
    settings = WorkerSettings(
        redis_url="redis://app:s3cret@host:6379/0", mongodb_uri="mongodb://u:hunter2@h1,h2/db"
    )
    text = str(settings.redacted()) + repr(settings)
    assert "s3cret" not in text and "hunter2" not in text
    assert redact_url("redis://host:1/0") == "redis://host:1/0"


def test_dead_letter_stream_shares_the_hash_slot() -> None:
    assert dead_letter_stream_for("feedback") == "{feedback}:dead"
    assert dead_letter_stream_for("{fb}:events") == "{fb}:events:dead"
    # An empty "{}" is no hash tag, and no tag can reproduce the slot of such a name.
    with pytest.raises(ValueError, match="hash tag"):
        dead_letter_stream_for("a{}b")
    with pytest.raises(ValidationError, match="hash tag"):
        WorkerSettings(stream="a{}b")


def test_histogram_quantiles_and_merge() -> None:
    h = LatencyHistogram()
    for ms in [1] * 90 + [1000] * 10:
        h.observe(ms)
    other = LatencyHistogram()
    other.observe(5)
    h.merge(other.counts)
    assert h.total == 101
    assert h.quantile(0.5) == 1.0
    p99 = h.quantile(0.99)
    assert p99 is not None and 1000 <= p99 < 1300


def test_claim_plan_isolates_entries_delivered_more_than_once() -> None:
    from feedback_worker.reader import PendingEntry
    from feedback_worker.reclaim import plan_claims

    rows = [
        PendingEntry("5-0", "c", 1), PendingEntry("6-0", "c", 3), PendingEntry("7-0", "c", 2),
        PendingEntry("8-0", "c", 5), PendingEntry("9-0", "c", 1), PendingEntry("10-0", "c", 2),
    ]  # fmt: skip
    plan = plan_claims(rows, max_deliveries=5)
    assert [r.entry_id for r in plan.dead] == ["8-0"]
    assert [r.entry_id for r in plan.together] == ["5-0", "9-0"]
    # Fewest deliveries first, then by id as numbers ("10-0" after "7-0").
    assert [r.entry_id for r in plan.alone] == ["7-0", "10-0", "6-0"]


def test_urls_can_come_from_secret_files(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "redis-url"  # type: ignore[operator]
    secret.write_text("redis://app:fromfile@10.0.0.1:6379/0\n")
    monkeypatch.setenv("FEEDBACK_REDIS_URL_FILE", str(secret))
    settings = WorkerSettings()
    assert settings.redis_url.get_secret_value() == "redis://app:fromfile@10.0.0.1:6379/0"
    assert "fromfile" not in str(settings.redacted())
    monkeypatch.setenv("FEEDBACK_REDIS_URL", "redis://plain:6379/0")
    assert WorkerSettings().redis_url.get_secret_value() == "redis://plain:6379/0"


def test_readme_documents_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [n for n in WorkerSettings.model_fields if f"`FEEDBACK_{n.upper()}`" not in readme]
    assert missing == []
