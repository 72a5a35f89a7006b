"""Redis and MongoDB clients built from the settings: the one place for timeouts and TLS."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from pymongo import AsyncMongoClient

from feedback_worker.settings import WorkerSettings


def redis_options(s: WorkerSettings, *, socket_timeout_s: float | None = None) -> dict[str, Any]:
    """Keyword arguments for redis-py's ``from_url``; ``socket_timeout_s`` overrides the setting
    for short-lived commands such as probes."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s or s.redis_socket_timeout_s,
        "socket_connect_timeout": s.redis_connect_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": s.redis_health_check_interval_s,
    }
    tls = {
        "ssl_ca_certs": s.redis_tls_ca_file,
        "ssl_certfile": s.redis_tls_cert_file,
        "ssl_keyfile": s.redis_tls_key_file,
    }
    options.update({name: str(path) for name, path in tls.items() if path is not None})
    return options


def mongo_options(s: WorkerSettings) -> dict[str, Any]:
    """Keyword arguments for pymongo's client; they win over the same options in the URI."""
    timeout_ms = s.mongo_timeout_ms
    options: dict[str, Any] = {
        "serverSelectionTimeoutMS": timeout_ms,
        "socketTimeoutMS": timeout_ms,
        "connectTimeoutMS": timeout_ms,
    }
    if s.mongodb_tls_ca_file is not None:
        options.update(tls=True, tlsCAFile=str(s.mongodb_tls_ca_file))
    if s.mongodb_tls_cert_key_file is not None:
        options.update(tls=True, tlsCertificateKeyFile=str(s.mongodb_tls_cert_key_file))
    return options


def async_redis(s: WorkerSettings, *, socket_timeout_s: float | None = None) -> redis.asyncio.Redis:
    url = s.redis_url.get_secret_value()
    return redis.asyncio.Redis.from_url(url, **redis_options(s, socket_timeout_s=socket_timeout_s))


def sync_redis(s: WorkerSettings, *, socket_timeout_s: float | None = None) -> redis.Redis:
    url = s.redis_url.get_secret_value()
    return redis.Redis.from_url(url, **redis_options(s, socket_timeout_s=socket_timeout_s))


def async_mongo(s: WorkerSettings) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(s.mongodb_uri.get_secret_value(), **mongo_options(s))
