"""``feedback-worker doctor``: check the servers for settings that can lose or stall feedback.

Each check says ``ok``, ``warn`` (works, but worth a look) or ``fail`` (can lose data, or the
worker cannot run). The command exits 1 when any check fails. URLs are shown without passwords.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import pymongo.errors
import redis.asyncio
import redis.exceptions
from pymongo import AsyncMongoClient

from feedback_ingest.redis_errors import DENIED, TRANSIENT, access_denied, is_missing_key
from feedback_worker.clients import async_mongo, async_redis
from feedback_worker.settings import WorkerSettings, redact_url
from feedback_worker.writer import KEY_INDEX, mongo_access_denied

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    status: Status
    detail: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _redis_config(client: redis.asyncio.Redis, name: str) -> str | None:
    try:
        reply: Any = await client.config_get(name)
    except redis.exceptions.ResponseError:  # CONFIG is often disabled on managed servers
        return None
    values = {_text(k): _text(v) for k, v in reply.items()}
    return values.get(name)


async def check_redis(client: redis.asyncio.Redis, s: WorkerSettings) -> list[Finding]:
    findings = []
    policy = await _redis_config(client, "maxmemory-policy")
    if policy is None:
        findings.append(Finding("redis.maxmemory-policy", "warn", "CONFIG GET is not allowed"))
    elif policy.startswith("allkeys"):
        findings.append(
            Finding(
                "redis.maxmemory-policy",
                "fail",
                f"{policy} may evict the stream under memory pressure; use noeviction",
            )
        )
    else:
        findings.append(Finding("redis.maxmemory-policy", "ok", policy))
    appendonly = await _redis_config(client, "appendonly")
    fsync = await _redis_config(client, "appendfsync")
    save = await _redis_config(client, "save")
    if appendonly is None:
        findings.append(Finding("redis.persistence", "warn", "CONFIG GET is not allowed"))
    elif appendonly == "yes":
        status: Status = "ok" if fsync == "always" else "warn"
        findings.append(Finding("redis.persistence", status, f"AOF, appendfsync {fsync}"))
    elif save:
        findings.append(
            Finding(
                "redis.persistence",
                "warn",
                f"RDB snapshots only ({save}): a crash loses recent XADDs",
            )
        )
    else:
        findings.append(
            Finding(
                "redis.persistence", "fail", "no AOF and no snapshots: a restart loses the stream"
            )
        )
    findings.extend(await _check_group(client, s))
    return findings


async def _check_group(client: redis.asyncio.Redis, s: WorkerSettings) -> list[Finding]:
    try:
        groups: Any = await client.xinfo_groups(s.stream)
    except redis.exceptions.ResponseError as exc:
        if is_missing_key(exc):
            return [Finding("stream", "warn", f"stream {s.stream!r} does not exist yet")]
        return [Finding("stream", "warn", f"cannot inspect {s.stream!r}: {exc}")]
    group = next((g for g in groups if _text(g["name"]) == s.group), None)
    if group is None:
        return [Finding("group", "warn", f"group {s.group!r} does not exist (workers create it)")]
    findings = [Finding("group", "ok", f"{s.group!r}, {int(group['consumers'])} consumers")]
    findings.append(Finding("group.lag", "ok", f"{group.get('lag')} entries not yet delivered"))
    pending = int(group["pending"])
    if pending:
        summary: Any = await client.xpending(s.stream, s.group)
        oldest_ms = int(_text(summary["min"]).split("-")[0])
        age_s = max(0.0, time.time() - oldest_ms / 1000)
        status: Status = "warn" if age_s * 1000 > 10 * s.claim_min_idle_ms else "ok"
        detail = f"{pending} pending, oldest entry {age_s:.0f} s old"
        findings.append(Finding("group.pending", status, detail))
    else:
        findings.append(Finding("group.pending", "ok", "nothing pending"))
    return findings


async def check_mongo(client: AsyncMongoClient[dict[str, Any]], s: WorkerSettings) -> list[Finding]:
    findings = []
    w = s.write_concern_w
    if w == "0":
        findings.append(Finding("mongo.write-concern", "fail", "w=0 acks writes nobody confirmed"))
    elif w == "1" or not s.write_concern_journal:
        detail = f"w={w}, j={s.write_concern_journal}: a failover may lose acked writes"
        findings.append(Finding("mongo.write-concern", "warn", detail))
    else:
        findings.append(Finding("mongo.write-concern", "ok", f"w={w}, j=true"))
    collection = client[s.database][s.collection]
    if s.collection not in await client[s.database].list_collection_names():
        detail = f"{collection.full_name} does not exist yet (workers create it and its index)"
        findings.append(Finding("mongo.key-index", "warn", detail))
        return findings
    indexes = [index async for index in await collection.list_indexes()]
    if any(i.get("unique") and list(i["key"].items()) == KEY_INDEX for i in indexes):
        findings.append(Finding("mongo.key-index", "ok", "unique index on the four key fields"))
    else:
        detail = f"{collection.full_name} has no unique index on the four key fields"
        findings.append(Finding("mongo.key-index", "fail", detail))
    return findings


async def diagnose(s: WorkerSettings) -> list[Finding]:
    """Run every check; connection failures become findings rather than exceptions."""
    findings: list[Finding] = []
    r = async_redis(s, socket_timeout_s=5)
    try:
        await r.ping()
        findings.append(Finding("redis", "ok", redact_url(s.redis_url.get_secret_value())))
        findings.extend(await check_redis(r, s))
    except DENIED as exc:
        findings.append(Finding("redis", "fail", str(access_denied(exc))))
    except TRANSIENT as exc:
        findings.append(Finding("redis", "fail", f"unreachable: {type(exc).__name__}"))
    finally:
        await r.aclose()
    m = async_mongo(s)
    try:
        await m.admin.command("ping")
        findings.append(Finding("mongo", "ok", redact_url(s.mongodb_uri.get_secret_value())))
        findings.extend(await check_mongo(m, s))
    except pymongo.errors.PyMongoError as exc:
        denied = mongo_access_denied(exc)
        detail = str(denied) if denied else f"unreachable: {type(exc).__name__}"
        findings.append(Finding("mongo", "fail", detail))
    finally:
        await m.close()
    return findings


def render(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    return "\n".join(f"{f.status:<4}  {f.check:<{width}}  {f.detail}" for f in findings)
