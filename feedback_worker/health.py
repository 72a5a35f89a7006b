"""Liveness and readiness: a heartbeat key per consumer, written from the loop itself.

The loop writes ``<stream>:health:<consumer>`` (with a TTL) as it makes progress, and also while
it retries a failing server, marked not ready. So a heartbeat that goes stale means the loop is
stuck (liveness fails: restart it), and ``ready: false`` means a server is down (readiness fails:
keep it, it catches up by itself). ``feedback-worker check`` reads the key, for probes.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import redis
import redis.asyncio


def health_key(stream: str, consumer: str) -> str:
    return f"{stream}:health:{consumer}"


class HealthReporter:
    """Writes the heartbeat at most every ``interval_s``; keeps no history, only the last beat."""

    def __init__(
        self, client: redis.asyncio.Redis, key: str, *, interval_s: float, ttl_s: float
    ) -> None:
        self._client = client
        self._key = key
        self._interval_s = interval_s
        self._ttl_ms = int(ttl_s * 1000)
        self._next_at = 0.0
        self._last_ready: bool | None = None

    async def beat(self, *, ready: bool, counters: dict[str, int]) -> None:
        now = time.monotonic()
        if now < self._next_at and ready == self._last_ready:
            return
        self._next_at, self._last_ready = now + self._interval_s, ready
        body = json.dumps({"at_ms": int(time.time() * 1000), "ready": ready, **counters})
        # Redis itself down: the key expires, which is what a probe should see.
        with contextlib.suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            await self._client.set(self._key, body, px=self._ttl_ms)


def check(client: redis.Redis, key: str, *, max_age_s: float, need_ready: bool) -> tuple[bool, str]:
    """(healthy, why) for the consumer's last heartbeat."""
    raw: Any = client.get(key)
    if raw is None:
        return False, "no heartbeat (stopped, never started, or expired)"
    beat = json.loads(raw)
    age_s = time.time() - beat["at_ms"] / 1000
    if age_s > max_age_s:
        return False, f"last heartbeat {age_s:.0f} s ago: the loop is stuck"
    if need_ready and not beat["ready"]:
        return False, "not ready: a server is failing; the worker is retrying"
    return True, f"heartbeat {age_s:.1f} s ago, ready={beat['ready']}"
