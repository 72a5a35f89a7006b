"""Helpers shared by the integration tests: run a worker in-process until a condition holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from feedback_worker import Worker, WorkerSettings
from tests.conftest import Servers


def worker_settings(servers: Servers, names: dict[str, str], **overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "redis_url": servers.redis_url,
        "mongodb_uri": servers.mongodb_uri,
        "stream": names["stream"],
        "group": names["group"],
        "database": names["database"],
        "consumer": "c1",
        "block_ms": 200,
        "redis_socket_timeout_s": 5,
        "mongo_timeout_ms": 20_000,
        "claim_min_idle_ms": 30_000,
        "shutdown_grace_s": 10,
        "log_format": "json",
    }
    values.update(overrides)
    return WorkerSettings(**values)


async def run_until(
    workers: list[Worker], condition: Callable[[], Awaitable[bool]], timeout_s: float = 60
) -> None:
    """Run ``workers`` until ``condition`` holds, then stop them; fail after ``timeout_s``."""
    tasks = [asyncio.create_task(w.run()) for w in workers]
    deadline = time.monotonic() + timeout_s
    try:
        while not await condition():
            for task in tasks:
                if task.done():
                    task.result()  # surface a crash
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.1)
    finally:
        for w in workers:
            w.request_stop()
        await asyncio.gather(*tasks)
