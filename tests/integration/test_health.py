"""``feedback-worker check``: alive while the loop turns, not ready while MongoDB is down."""

from __future__ import annotations

import asyncio

import pytest

from feedback_worker import Worker
from feedback_worker.cli import main
from tests.conftest import Servers
from tests.integration.helpers import worker_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def env(servers: Servers, names: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDBACK_REDIS_URL", servers.redis_url)
    monkeypatch.setenv("FEEDBACK_STREAM", names["stream"])
    monkeypatch.setenv("FEEDBACK_CONSUMER", "probe-me")


@pytest.mark.usefixtures("env")
async def test_check_follows_the_loop(servers: Servers, names: dict[str, str]) -> None:
    assert main(["check"]) == 1  # never started
    worker = Worker(
        worker_settings(servers, names, consumer="probe-me", health_interval_s=0.2),
        handle_signals=False,
    )
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(1.0)
    assert await asyncio.to_thread(main, ["check", "--ready"]) == 0
    worker.request_stop()
    await task
    await asyncio.sleep(1.2)
    assert await asyncio.to_thread(main, ["check", "--max-age-s", "1"]) == 1  # loop stopped


@pytest.mark.usefixtures("env")
async def test_mongo_down_means_alive_but_not_ready(
    servers: Servers, names: dict[str, str]
) -> None:
    worker = Worker(
        worker_settings(
            servers,
            names,
            consumer="probe-me",
            health_interval_s=0.2,
            mongodb_uri="mongodb://127.0.0.1:1/",
            mongo_timeout_ms=300,
        ),
        handle_signals=False,
    )
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(2.0)
        assert await asyncio.to_thread(main, ["check"]) == 0
        assert await asyncio.to_thread(main, ["check", "--ready"]) == 1
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)
