"""``feedback-worker doctor`` flags what can lose data and passes on a sound set-up."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from pymongo import AsyncMongoClient

from feedback_worker.doctor import diagnose
from feedback_worker.writer import MongoWriter
from tests.conftest import Servers
from tests.integration.helpers import worker_settings

pytestmark = pytest.mark.integration


def statuses(findings: list[Any]) -> dict[str, str]:
    return {f.check: f.status for f in findings}


async def test_doctor_passes_once_a_worker_has_prepared_the_servers(
    servers: Servers,
    names: dict[str, str],
    amongo: AsyncMongoClient[dict[str, Any]],
    sredis: redis.Redis,
) -> None:
    settings = worker_settings(servers, names)
    sredis.xgroup_create(names["stream"], names["group"], id="0", mkstream=True)
    await MongoWriter(amongo[names["database"]]["feedback"], chunk_events=32).ensure_key_index()
    found = statuses(await diagnose(settings))
    if servers.origin == "local stack":  # started with noeviction and AOF: everything passes
        assert set(found.values()) == {"ok"}, found
    assert found["mongo.key-index"] == "ok"
    assert found["group"] == "ok"


async def test_doctor_fails_on_an_evicting_policy_and_a_missing_unique_index(
    servers: Servers,
    names: dict[str, str],
    amongo: AsyncMongoClient[dict[str, Any]],
    sredis: redis.Redis,
) -> None:
    await amongo[names["database"]]["feedback"].insert_one({"userId": "u"})
    before: Any = sredis.config_get("maxmemory-policy")
    sredis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        settings = worker_settings(servers, names)
        findings = await diagnose(settings)
    finally:
        sredis.config_set("maxmemory-policy", before["maxmemory-policy"])
    found = statuses(findings)
    assert found["redis.maxmemory-policy"] == "fail"
    assert found["mongo.key-index"] == "fail"


async def test_doctor_reports_unreachable_servers_without_their_passwords(
    servers: Servers, names: dict[str, str]
) -> None:
    settings = worker_settings(
        servers,
        names,
        redis_url="redis://app:topsecret@127.0.0.1:1/0",
        mongodb_uri="mongodb://app:hunter22@127.0.0.1:1/",
        mongo_timeout_ms=300,
    )
    findings = await diagnose(settings)
    assert statuses(findings) == {"redis": "fail", "mongo": "fail"}
    assert "topsecret" not in repr(findings) and "hunter22" not in repr(findings)
