"""The worker's one settings object, read from ``FEEDBACK_*`` environment variables or ``.env``."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, FilePath, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feedback_ingest import defaults

SECRET_FIELDS = ("redis_url", "mongodb_uri")


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(BaseSettings):
    """Everything a worker process needs; validated once, when built, and passed explicitly."""

    model_config = SettingsConfigDict(
        env_prefix="FEEDBACK_", env_file=".env", extra="ignore", frozen=True
    )

    redis_url: SecretStr = Field(SecretStr(defaults.REDIS_URL), description="Redis URL.")
    mongodb_uri: SecretStr = Field(SecretStr(defaults.MONGODB_URI), description="MongoDB URI.")
    database: str = Field(defaults.DATABASE, min_length=1)
    collection: str = Field(defaults.COLLECTION, min_length=1)
    stream: str = Field(defaults.STREAM, min_length=1)
    group: str = Field(defaults.GROUP, min_length=1)
    consumer: str = Field(default_factory=_default_consumer, min_length=1)

    batch_max_events: int = Field(500, ge=1, le=10_000, description="Entries per XREADGROUP.")
    block_ms: int = Field(2_000, ge=1, le=60_000, description="How long a read waits for data.")
    redis_socket_timeout_s: float = Field(10.0, gt=0, description="Redis socket read timeout.")
    redis_connect_timeout_s: float = Field(5.0, gt=0)
    redis_health_check_interval_s: float = Field(
        30.0, gt=0, description="PING a pooled connection idle this long before reusing it."
    )
    redis_tls_ca_file: FilePath | None = Field(
        None, description="CA bundle for the Redis server certificate (rediss:// URLs only)."
    )
    redis_tls_cert_file: FilePath | None = Field(None, description="Client certificate (PEM).")
    redis_tls_key_file: FilePath | None = Field(None, description="Its private key (PEM).")
    mongodb_tls_ca_file: FilePath | None = Field(
        None, description="CA bundle for the MongoDB server certificate; setting it turns TLS on."
    )
    mongodb_tls_cert_key_file: FilePath | None = Field(
        None, description="Client certificate and private key in one PEM; turns TLS on."
    )
    mongo_timeout_ms: int = Field(10_000, ge=100, description="Server selection/socket timeout.")
    write_chunk_events: int = Field(
        32, ge=1, le=10_000, description="Upserts per bulk write command (sent one after another)."
    )
    write_concern_w: str = Field("majority", description="MongoDB write concern 'w'.")
    write_concern_journal: bool = Field(True, description="Wait for the journal before acking.")

    claim_min_idle_ms: int = Field(60_000, ge=1_000, description="Idle time before a peer claims.")
    claim_interval_s: float = Field(15.0, gt=0, description="How often to look for idle entries.")
    claim_page_events: int = Field(500, ge=1, le=10_000, description="Entries per XAUTOCLAIM.")
    max_deliveries: int = Field(5, ge=1, description="Deliveries before an entry is dead-lettered.")
    consumer_expiry_ms: int = Field(
        3_600_000,
        ge=0,
        description="Remove consumers idle this long with nothing pending (0 keeps them all).",
    )

    trim_interval_s: float = Field(
        60.0, ge=0, description="How often to trim acknowledged entries (0 turns trimming off)."
    )
    health_interval_s: float = Field(5.0, gt=0, description="How often the heartbeat is written.")
    health_ttl_s: float = Field(60.0, gt=0, description="Heartbeat expiry; probes fail after it.")
    backoff_base_ms: int = Field(defaults.BACKOFF_BASE_MS, ge=1)
    backoff_cap_ms: int = Field(defaults.BACKOFF_CAP_MS, ge=1)
    shutdown_grace_s: float = Field(25.0, gt=0, description="Time to finish the batch in hand.")

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values: Any) -> Any:
        """``FEEDBACK_REDIS_URL_FILE`` / ``FEEDBACK_MONGODB_URI_FILE`` name files that hold the URL
        (a mounted Kubernetes or systemd secret); the file wins over nothing, never over a value
        given explicitly."""
        if not isinstance(values, dict):
            return values
        for name in SECRET_FIELDS:
            path = os.environ.get(f"FEEDBACK_{name.upper()}_FILE")
            if path and name not in values:
                values = {**values, name: Path(path).read_text().strip()}
        return values

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        # Redis may re-block a read that was woken without data, so a blocking read can take up to
        # about twice block_ms; the socket timeout must outlast that or idle reads look like
        # failures (case C04).
        needed_s = 2 * self.block_ms / 1000 + 1
        if self.redis_socket_timeout_s < needed_s:
            raise ValueError(
                f"redis_socket_timeout_s ({self.redis_socket_timeout_s}) must be at least "
                f"2 * block_ms + 1 s = {needed_s} s"
            )
        defaults.dead_letter_stream_for(self.stream)  # refuses names that break slot sharing
        if self.backoff_cap_ms < self.backoff_base_ms:
            raise ValueError("backoff_cap_ms must be >= backoff_base_ms")
        if self.claim_min_idle_ms <= self.mongo_timeout_ms:
            raise ValueError(
                "claim_min_idle_ms must exceed mongo_timeout_ms (a slow write is not dead)"
            )
        if 0 < self.consumer_expiry_ms < self.claim_min_idle_ms:
            raise ValueError("consumer_expiry_ms must be 0 or at least claim_min_idle_ms")
        if self.shutdown_grace_s * 1000 <= self.block_ms:
            raise ValueError("shutdown_grace_s must exceed block_ms")
        self._check_tls()
        return self

    def _check_tls(self) -> None:
        redis_tls_files = (
            self.redis_tls_ca_file,
            self.redis_tls_cert_file,
            self.redis_tls_key_file,
        )
        scheme = urlsplit(self.redis_url.get_secret_value()).scheme
        if any(redis_tls_files) and scheme != "rediss":
            # redis-py would either ignore the files or fail on the first command: refuse early.
            raise ValueError(f"redis_tls_* files need a rediss:// URL, not {scheme}://")
        if (self.redis_tls_cert_file is None) != (self.redis_tls_key_file is None):
            raise ValueError("redis_tls_cert_file and redis_tls_key_file go together")

    @property
    def dead_letter_stream(self) -> str:
        return defaults.dead_letter_stream_for(self.stream)

    def redacted(self) -> dict[str, object]:
        """Settings as a dict for logs, with the passwords in URLs replaced by ``***``."""
        values = self.model_dump()
        values["redis_url"] = redact_url(self.redis_url.get_secret_value())
        values["mongodb_uri"] = redact_url(self.mongodb_uri.get_secret_value())
        return values


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))
