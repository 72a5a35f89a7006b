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
    deadline = asyncio.get_running_loop().time() + 20
    while main(["check", "--ready"]) != 0:  # beats once started
        assert asyncio.get_running_loop().time() < deadline, "no healthy heartbeat"
        await asyncio.sleep(0.2)
    worker.request_stop()
    await task
    await asyncio.sleep(1.2)
    assert main(["check", "--max-age-s", "1"]) == 1  # loop stopped


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
        deadline = asyncio.get_running_loop().time() + 20
        while main(["check"]) != 0:  # alive, while retrying
            assert asyncio.get_running_loop().time() < deadline, "no heartbeat while retrying"
            await asyncio.sleep(0.2)
        assert main(["check", "--ready"]) == 1
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)
