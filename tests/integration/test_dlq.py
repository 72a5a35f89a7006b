"""``feedback-worker dlq``: list, show, replay (re-validated) and purge (only when confirmed)."""

from __future__ import annotations

import pytest
import redis

from feedback_ingest.wire import FeedbackEvent, encode_event
from feedback_worker.cli import main
from feedback_worker.deadletter import dead_letter_fields
from feedback_worker.entries import Rejection, StreamEntry
from tests.conftest import Servers

pytestmark = pytest.mark.integration


@pytest.fixture
def dead_letters(
    servers: Servers, names: dict[str, str], sredis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    monkeypatch.setenv("FEEDBACK_REDIS_URL", servers.redis_url)
    monkeypatch.setenv("FEEDBACK_STREAM", names["stream"])
    good = encode_event(
        FeedbackEvent.create(
            user_id="u", agent_id="a", source_id="s", source="w", value=1, event_id="ok1"
        )
    )
    entries = [
        StreamEntry("1-1", {k.encode(): v.encode() for k, v in good.items()}),
        StreamEntry("1-2", {b"v": b"1", b"userId": b"only"}),
    ]
    ids = []
    for entry in entries:
        fields = dead_letter_fields(
            Rejection(entry, "test"), stream=names["stream"], group="g", consumer="c", deliveries=1
        )
        ids.append(sredis.xadd(f"{{{names['stream']}}}:dead", fields).decode())  # type: ignore[arg-type]
    return ids


def test_list_and_show(dead_letters: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "list"]) == 0
    assert capsys.readouterr().out.count("test") == 2
    assert main(["dlq", "show", dead_letters[1]]) == 0
    assert "field:userId: only" in capsys.readouterr().out
    assert main(["dlq", "show", "9-9"]) == 1


def test_replay_resubmits_valid_entries_and_keeps_invalid_ones(
    dead_letters: list[str],
    names: dict[str, str],
    sredis: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["dlq", "replay"]) == 1  # one entry is still invalid
    out = capsys.readouterr().out
    assert "replayed 1, kept 1" in out and "agentId: required field is missing" in out
    [(_, fields)] = sredis.xrange(names["stream"])  # type: ignore[misc]
    assert fields[b"eventId"] == b"ok1"
    remaining = sredis.xrange(f"{{{names['stream']}}}:dead")
    assert [i.decode() for i, _ in remaining] == [dead_letters[1]]  # type: ignore[union-attr]


def test_purge_needs_confirmation(
    dead_letters: list[str], names: dict[str, str], sredis: redis.Redis
) -> None:
    dead = f"{{{names['stream']}}}:dead"
    assert main(["dlq", "purge"]) == 2
    assert sredis.xlen(dead) == 2
    assert main(["dlq", "purge", dead_letters[0], "--yes"]) == 0
    assert sredis.xlen(dead) == 1
    assert main(["dlq", "purge", "--yes"]) == 0
    assert sredis.xlen(dead) == 0
