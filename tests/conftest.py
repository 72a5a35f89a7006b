"""Fixtures: one real Redis and one real MongoDB-protocol server per test session.

Where ``FEEDBACK_REDIS_URL`` and ``FEEDBACK_MONGODB_URI`` are set, those servers are used. Else,
where a Docker engine answers, testcontainers starts the official ``redis`` and ``mongo`` images.
Else the project's local stack (``scripts/stack.py``) starts ``redis-server`` and FerretDB on free
loopback ports in a temporary folder. A test needing a server that cannot be had fails under CI
and is skipped elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import redis
import redis.asyncio
from pymongo import AsyncMongoClient, MongoClient

ROOT = Path(__file__).resolve().parent.parent

# Under CI the property tests draw the same examples every run: a red build then always means a
# change, never luck. Locally each run explores new inputs.
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


@dataclass(frozen=True)
class Servers:
    redis_url: str
    mongodb_uri: str
    origin: str


def _docker_reachable() -> bool:
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    import docker  # type: ignore[import-untyped]

    try:
        client = docker.from_env(timeout=3)
    except Exception:  # any failure means "no engine here"
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"integration servers unavailable under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    url, uri = os.environ.get("FEEDBACK_REDIS_URL"), os.environ.get("FEEDBACK_MONGODB_URI")
    if url and uri:
        yield Servers(url, uri, "environment")
        return
    if _docker_reachable():
        from testcontainers.mongodb import MongoDbContainer
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7") as r, MongoDbContainer("mongo:7") as m:
            host, port = r.get_container_host_ip(), r.get_exposed_port(6379)
            yield Servers(f"redis://{host}:{port}/0", m.get_connection_url(), "testcontainers")
        return
    state = tmp_path_factory.mktemp("stack")
    stack = [sys.executable, str(ROOT / "scripts" / "stack.py")]
    up = subprocess.run([*stack, "up", "--dir", str(state)], capture_output=True, text=True)
    if up.returncode != 0:
        _unavailable(f"local stack did not start: {up.stderr[-2000:]}")
    env = dict(line.split("=", 1) for line in up.stdout.split())
    try:
        yield Servers(env["FEEDBACK_REDIS_URL"], env["FEEDBACK_MONGODB_URI"], "local stack")
    finally:
        subprocess.run([*stack, "down", "--dir", str(state)], capture_output=True, check=False)


@pytest.fixture(scope="session")
def is_ferretdb(servers: Servers) -> bool:
    with MongoClient(servers.mongodb_uri, serverSelectionTimeoutMS=5000) as client:
        return "ferretdbVersion" in client.admin.command("buildInfo")


@pytest.fixture
def names() -> dict[str, str]:
    """Unique stream, group and database names, so tests never see each other's data."""
    tag = uuid.uuid4().hex[:12]
    return {"stream": f"test-{tag}", "group": f"g-{tag}", "database": f"t_{tag}"}


@pytest.fixture
async def aredis(servers: Servers) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(servers.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def sredis(servers: Servers) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(servers.redis_url)
    yield client
    client.close()


@pytest.fixture
async def amongo(
    servers: Servers, names: dict[str, str]
) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        servers.mongodb_uri, serverSelectionTimeoutMS=10_000
    )
    yield client
    await client.drop_database(names["database"])
    await client.close()
