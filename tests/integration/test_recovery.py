"""Faults around the stream: a vanished group (C02), idle reads (C04), shutdown (C10)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import redis.asyncio
from pymongo import AsyncMongoClient

from feedback_ingest import AsyncFeedbackProducer
from feedback_worker import Worker
from feedback_worker.consumers import remove_idle_consumers
from feedback_worker.writer import MongoWriter
from tests.conftest import ROOT, Servers
from tests.integration.helpers import run_until, worker_settings

pytestmark = pytest.mark.integration
Mongo = AsyncMongoClient[dict[str, Any]]


def event(i: int) -> dict[str, Any]:
    return {"user_id": f"u{i}", "agent_id": "a", "source_id": "s", "source": "web", "value": i}


async def produce(servers: Servers, stream: str, events: list[dict[str, Any]]) -> None:
    async with AsyncFeedbackProducer.from_url(servers.redis_url, stream=stream) as producer:
        await producer.submit_many(events)


async def docs(mongo: Mongo, names: dict[str, str]) -> int:
    return await mongo[names["database"]]["feedback"].count_documents({})


async def test_group_deleted_under_running_workers_is_recreated(
    servers: Servers, names: dict[str, str], aredis: redis.asyncio.Redis, amongo: Mongo
) -> None:
    """C02: the stream key vanishes (flush, restart without persistence); new events still land."""
    await produce(servers, names["stream"], [event(0)])
    workers = [
        Worker(worker_settings(servers, names, consumer=f"c{i}"), handle_signals=False)
        for i in range(2)
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        deadline = time.monotonic() + 30
        while await docs(amongo, names) < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        await aredis.delete(names["stream"])
        await asyncio.sleep(0.5)
        await produce(servers, names["stream"], [event(i) for i in range(1, 11)])
        while await docs(amongo, names) < 11:
            assert time.monotonic() < deadline, "events after the flush were not written"
            await asyncio.sleep(0.1)
    finally:
        for w in workers:
            w.request_stop()
        await asyncio.gather(*tasks)
    recreated = sum(w.metrics.counters["group_recreated"] for w in workers)
    assert recreated >= 1
    # Backoff, not a hot loop: a handful of recreations, not thousands.
    assert recreated <= 20


async def test_idle_blocking_reads_are_not_failures(
    servers: Servers, names: dict[str, str], amongo: Mongo
) -> None:
    """C04: three workers block on empty reads; one event arrives; nothing counts as an error."""
    workers = [
        Worker(
            worker_settings(
                servers, names, consumer=f"c{i}", block_ms=1_000, redis_socket_timeout_s=3.5
            ),
            handle_signals=False,
        )
        for i in range(3)
    ]
    started = time.monotonic()

    async def condition() -> bool:
        elapsed = time.monotonic() - started
        if elapsed > 1.0 and not getattr(condition, "sent", False):
            condition.sent = True  # type: ignore[attr-defined]
            await produce(servers, names["stream"], [event(1)])
        return elapsed > 5.0 and await docs(amongo, names) == 1

    await run_until(workers, condition, timeout_s=30)
    assert sorted(w.metrics.counters["read"] for w in workers) == [0, 0, 1]
    assert all(w.metrics.counters["transient_errors"] == 0 for w in workers)


async def test_stop_with_events_in_hand_writes_and_acks_them(
    servers: Servers,
    names: dict[str, str],
    aredis: redis.asyncio.Redis,
    amongo: Mongo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """C10: stop requested while 30 events are read but not written: all are written and acked."""
    gate, reached = asyncio.Event(), asyncio.Event()
    original = MongoWriter.write

    async def held_write(self: MongoWriter, items: list[Any]) -> Any:
        reached.set()
        await gate.wait()
        return await original(self, items)

    monkeypatch.setattr(MongoWriter, "write", held_write)
    await produce(servers, names["stream"], [event(i) for i in range(30)])
    worker = Worker(worker_settings(servers, names), handle_signals=False)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(reached.wait(), 30)
    worker.request_stop()
    await asyncio.sleep(0.3)
    gate.set()
    await asyncio.wait_for(task, 30)
    assert await docs(amongo, names) == 30
    info: Any = await aredis.xpending(names["stream"], names["group"])
    assert info["pending"] == 0


def test_sigterm_exits_zero_after_acking(
    servers: Servers, names: dict[str, str], tmp_path: Any
) -> None:
    """C10 for the real process: SIGTERM ends the worker with status 0 and nothing pending."""
    import redis as sync_redis

    env = {
        **os.environ,
        "FEEDBACK_REDIS_URL": servers.redis_url,
        "FEEDBACK_MONGODB_URI": servers.mongodb_uri,
        "FEEDBACK_STREAM": names["stream"],
        "FEEDBACK_GROUP": names["group"],
        "FEEDBACK_DATABASE": names["database"],
        "FEEDBACK_BLOCK_MS": "300",
        "FEEDBACK_LOG_FORMAT": "json",
    }
    client = sync_redis.Redis.from_url(servers.redis_url)
    log_file = tmp_path / "worker.log"
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "feedback_worker", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        asyncio.run(produce(servers, names["stream"], [event(i) for i in range(30)]))
        deadline = time.monotonic() + 30
        while b'"batch"' not in log_file.read_bytes():
            assert process.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_file.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    pending: Any = client.xpending(names["stream"], names["group"])
    assert pending["pending"] == 0
    assert b'"worker_stopped"' in log_file.read_bytes()
    client.close()


@pytest.mark.parametrize("recovery", ["peer-claim", "own-restart"])
async def test_entries_trimmed_while_pending_are_counted_lost_not_written(
    servers: Servers,
    names: dict[str, str],
    aredis: redis.asyncio.Redis,
    amongo: Mongo,
    recovery: str,
) -> None:
    """C01: a consumer dies holding 50 entries that are then trimmed away; recovery drains them."""
    await produce(servers, names["stream"], [event(i) for i in range(50)])
    await aredis.xgroup_create(names["stream"], names["group"], id="0")
    await aredis.xreadgroup(names["group"], "dead", {names["stream"]: ">"}, count=50)
    await aredis.xtrim(names["stream"], maxlen=0)
    consumer = "dead" if recovery == "own-restart" else "peer"
    worker = Worker(
        worker_settings(
            servers,
            names,
            consumer=consumer,
            claim_min_idle_ms=1_000,
            mongo_timeout_ms=500,
            claim_interval_s=0.2,
        ),
        handle_signals=False,
    )
    await asyncio.sleep(1.1)

    async def drained() -> bool:
        info: Any = await aredis.xpending(names["stream"], names["group"])
        return int(info["pending"]) == 0

    await run_until([worker], drained, timeout_s=30)
    assert worker.metrics.counters["lost_before_processing"] == 50
    assert worker.metrics.counters["written"] == 0
    assert await docs(amongo, names) == 0


async def _until_length(client: redis.asyncio.Redis, stream: str, length: int) -> None:
    while await client.xlen(stream) < length:  # noqa: ASYNC110 - polls a remote server
        await asyncio.sleep(0.1)


async def _all_written(mongo: Mongo, names: dict[str, str], count: int) -> bool:
    return await docs(mongo, names) >= count


@pytest.mark.timeout(300)
async def test_poison_entry_that_kills_its_worker_is_dead_lettered_after_max_deliveries(
    servers: Servers,
    names: dict[str, str],
    aredis: redis.asyncio.Redis,
    amongo: Mongo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """C05: the worker dies whenever it handles userId "poison"; the fleet keeps going.

    A death is simulated by cancelling the worker's task while it holds the poison entry: nothing
    is acked, and the next worker must rely on Redis's own delivery counter.
    """
    died = asyncio.Event()
    original = MongoWriter.write

    async def deadly_write(self: MongoWriter, items: list[Any]) -> Any:
        if any(item.event.user_id == "poison" for item in items):
            died.set()
            await asyncio.Event().wait()  # hangs until the harness "kills" the worker
        return await original(self, items)

    monkeypatch.setattr(MongoWriter, "write", deadly_write)
    normal = [event(i) for i in range(100)]
    await produce(
        servers, names["stream"], [*normal[:50], event(-1) | {"user_id": "poison"}, *normal[50:]]
    )
    dead_stream = f"{{{names['stream']}}}:dead"
    deadline = time.monotonic() + 240
    round_number = 0
    while await aredis.xlen(dead_stream) == 0:
        assert time.monotonic() < deadline, f"poison not dead-lettered after {round_number} rounds"
        round_number += 1
        worker = Worker(
            worker_settings(
                servers,
                names,
                consumer=f"c{round_number}",
                claim_min_idle_ms=1_000,
                mongo_timeout_ms=500,
                claim_interval_s=0.1,
            ),
            handle_signals=False,
        )
        died.clear()
        task = asyncio.create_task(worker.run())
        dead_lettered = asyncio.create_task(_until_length(aredis, dead_stream, 1))
        await asyncio.wait(
            [asyncio.create_task(died.wait()), dead_lettered],
            timeout=60,
            return_when="FIRST_COMPLETED",
        )
        dead_lettered.cancel()
        if died.is_set():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(1.05)  # let the entry go idle for the next worker
            continue
        worker.request_stop()
        await task
    await run_until(
        [Worker(worker_settings(servers, names, consumer="last"), handle_signals=False)],
        lambda: _all_written(amongo, names, 100),
        timeout_s=60,
    )
    assert await aredis.xlen(dead_stream) == 1
    [(_, fields)] = await aredis.xrange(dead_stream)
    assert fields[b"field:userId"] == b"poison"
    assert int(fields[b"deliveries"]) == 6
    assert b"delivered 5 times" in fields[b"reason"]
    assert await docs(amongo, names) == 100
    info: Any = await aredis.xpending(names["stream"], names["group"])
    assert info["pending"] == 0


async def test_a_slow_batch_keeps_its_entries_from_peers(
    servers: Servers,
    names: dict[str, str],
    aredis: redis.asyncio.Redis,
    amongo: Mongo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A live consumer's long write is not stolen: its entries never look idle to a peer."""
    original = MongoWriter.write
    slow_once = asyncio.Event()

    async def slow_write(self: MongoWriter, items: list[Any]) -> Any:
        if not slow_once.is_set():
            slow_once.set()
            await asyncio.sleep(3.5)  # longer than claim_min_idle_ms
        return await original(self, items)

    monkeypatch.setattr(MongoWriter, "write", slow_write)
    await produce(servers, names["stream"], [event(i) for i in range(10)])
    common = {"claim_min_idle_ms": 1_200, "mongo_timeout_ms": 500, "claim_interval_s": 0.2}
    slow = Worker(worker_settings(servers, names, consumer="slow", **common), handle_signals=False)
    slow_task = asyncio.create_task(slow.run())
    await asyncio.wait_for(slow_once.wait(), 20)
    peer = Worker(worker_settings(servers, names, consumer="peer", **common), handle_signals=False)

    async def drained() -> bool:
        info: Any = await aredis.xpending(names["stream"], names["group"])
        return int(info["pending"]) == 0 and await docs(amongo, names) == 10

    try:
        await run_until([peer], drained, timeout_s=30)
    finally:
        slow.request_stop()
        await slow_task
    assert peer.metrics.counters["claimed"] == 0
    assert slow.metrics.counters["acked"] == 10


async def test_only_idle_consumers_with_nothing_pending_are_removed(
    names: dict[str, str], aredis: redis.asyncio.Redis
) -> None:
    """Removing a consumer drops its pending entries for good, so one that holds any stays."""
    stream, group = names["stream"], names["group"]
    for i in range(3):
        await aredis.xadd(stream, {"i": str(i)})
    await aredis.xgroup_create(stream, group, id="0")
    await aredis.xreadgroup(group, "holder", {stream: ">"}, count=2)  # dies holding two
    done: Any = await aredis.xreadgroup(group, "finished", {stream: ">"}, count=1)
    await aredis.xack(stream, group, done[0][1][0][0])
    await aredis.xgroup_createconsumer(stream, group, "self")
    await asyncio.sleep(0.3)
    await aredis.xadd(stream, {"i": "3"})
    fresh: Any = await aredis.xreadgroup(group, "active", {stream: ">"})  # just now: not idle
    await aredis.xack(stream, group, fresh[0][1][0][0])
    removed = await remove_idle_consumers(aredis, stream, group, 200, "self")
    assert removed == ["finished"]
    left: Any = await aredis.xinfo_consumers(stream, group)
    assert sorted(c["name"] for c in left) == [b"active", b"holder", b"self"]
    assert await remove_idle_consumers(aredis, "no-such-stream", group, 200, "self") == []


async def test_a_consumer_removed_while_blocked_gets_its_entry_and_comes_back(
    servers: Servers, names: dict[str, str], aredis: redis.asyncio.Redis
) -> None:
    """A quiet live worker may be removed (its reads deliver nothing, so it looks idle); the
    entry that wakes its blocked read must still be owned by it, never orphaned."""
    stream, group = names["stream"], names["group"]
    await aredis.xgroup_create(stream, group, id="0", mkstream=True)
    await aredis.xgroup_createconsumer(stream, group, "quiet")
    reader = redis.asyncio.Redis.from_url(servers.redis_url)
    try:
        blocked = asyncio.create_task(
            reader.xreadgroup(group, "quiet", {stream: ">"}, count=1, block=5_000)
        )
        await asyncio.sleep(0.3)
        assert await remove_idle_consumers(aredis, stream, group, 0, "other") == ["quiet"]
        entry_id = await aredis.xadd(stream, {"i": "1"})
        delivered: Any = await blocked
    finally:
        await reader.aclose()
    assert delivered[0][1][0][0] == entry_id
    pending: Any = await aredis.xpending_range(stream, group, "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(entry_id, b"quiet")]
    consumers: Any = await aredis.xinfo_consumers(stream, group)
    assert [(c["name"], c["pending"]) for c in consumers] == [(b"quiet", 1)]
