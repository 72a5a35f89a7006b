"""TLS settings, ACL rules and refused accounts: what can be checked without a server."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pymongo.errors
import pytest

from feedback_ingest.errors import AccessDenied
from feedback_ingest.redis_errors import is_missing_key
from feedback_worker import acl, cli
from feedback_worker.clients import mongo_options, redis_options
from feedback_worker.settings import WorkerSettings
from feedback_worker.writer import MongoWriter
from tests.factories import decoded


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def test_tls_files_reach_the_clients(pem: Path) -> None:
    settings = WorkerSettings(
        redis_url="rediss://w:pw@redis.internal:6380/0",
        redis_tls_ca_file=pem,
        redis_tls_cert_file=pem,
        redis_tls_key_file=pem,
        mongodb_tls_ca_file=pem,
    )
    options = redis_options(settings)
    assert options["ssl_ca_certs"] == options["ssl_certfile"] == options["ssl_keyfile"] == str(pem)
    mongo = mongo_options(settings)
    assert (mongo["tls"], mongo["tlsCAFile"]) == (True, str(pem))
    assert "tlsCertificateKeyFile" not in mongo
    plain = WorkerSettings()
    assert not {"ssl_ca_certs", "ssl_certfile"} & set(redis_options(plain))
    assert "tls" not in mongo_options(plain)


def test_tls_settings_that_cannot_work_are_refused(pem: Path, tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="need a rediss:// URL"):
        WorkerSettings(redis_url="redis://h:6379/0", redis_tls_ca_file=pem)
    with pytest.raises(pydantic.ValidationError, match="go together"):
        WorkerSettings(redis_url="rediss://h:6380/0", redis_tls_cert_file=pem)
    with pytest.raises(pydantic.ValidationError, match="does not point to a file"):
        WorkerSettings(redis_url="rediss://h:6380/0", redis_tls_ca_file=tmp_path / "missing.pem")


def test_invalid_settings_are_reported_without_their_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """pydantic's own message shows the input, and so a password in a URL: ours never does."""
    monkeypatch.setenv("FEEDBACK_REDIS_URL", "redis://:pw-3141592@h:6379/0")
    monkeypatch.setenv("FEEDBACK_BLOCK_MS", "60000")
    monkeypatch.setenv("FEEDBACK_MAX_DELIVERIES", "0")
    assert cli.main(["doctor"]) == cli.EXIT_CONFIG
    message = capsys.readouterr().err
    assert "FEEDBACK_MAX_DELIVERIES: Input should be greater than or equal to 1" in message
    assert "pw-3141592" not in message
    with pytest.raises(pydantic.ValidationError) as raised:
        WorkerSettings(max_deliveries=1, block_ms=60_000)
    assert "redis_socket_timeout_s" in cli.describe_invalid(raised.value)


def test_acl_rules_name_only_the_streams_keys() -> None:
    assert (
        acl.rules("producer") == "resetkeys ~feedback resetchannels -@all +xadd +xinfo|groups +xlen"
    )
    assert acl.key_patterns("worker", "{app}:fb") == [
        "{app}:fb",
        "{app}:fb:dead",
        "{app}:fb:health:*",
    ]
    # Glob characters in a stream name match only themselves.
    assert acl.key_patterns("producer", "fb*[1]?") == [r"fb\*\[1\]\?"]
    assert "+xreadgroup" not in acl.rules("producer") and "+flushall" not in acl.rules("worker")


class RefusingCollection:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def bulk_write(self, ops: list[object], ordered: bool) -> None:
        raise self.exc


@pytest.mark.parametrize(
    "exc",
    [
        pymongo.errors.OperationFailure("not authorized on feedback", code=13),
        pymongo.errors.OperationFailure("Authentication failed.", code=18),
        pymongo.errors.BulkWriteError({"writeErrors": [{"index": 0, "code": 13, "errmsg": "no"}]}),
    ],
)
async def test_a_refused_account_stops_the_write_instead_of_dead_lettering(exc: Exception) -> None:
    """Before, each statement was bisected and every event of the batch dead-lettered."""
    items = [decoded(f"{i}-0", f"u{i}", 1, f"e{i}", i) for i in range(4)]
    writer = MongoWriter(RefusingCollection(exc), chunk_events=32)  # type: ignore[arg-type]
    with pytest.raises(AccessDenied, match="MongoDB refused the account"):
        await writer.write(items)


def test_readme_shows_the_rules_the_command_prints() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for role in acl.COMMANDS:
        assert f"{role:<9} {acl.rules(role)}\n" in readme


def test_probe_and_dlq_commands_say_why_redis_failed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEEDBACK_REDIS_URL", "redis://:pw-2718@127.0.0.1:1/0")
    monkeypatch.setenv("FEEDBACK_REDIS_CONNECT_TIMEOUT_S", "0.5")
    for argv in (["check"], ["dlq", "list"]):
        assert cli.main(argv) == cli.EXIT_FAILED
        message = capsys.readouterr().err
        assert message.startswith("feedback-worker: Redis unavailable:"), message
        assert "pw-2718" not in message


def test_only_the_missing_stream_reply_means_no_stream() -> None:
    """Anything else (a refusal above all) must not read as "no stream, nothing to do"."""
    from redis._parsers.base import BaseParser

    assert is_missing_key(BaseParser.parse_error("ERR no such key"))
    for reply in (
        "NOGROUP No such key 'feedback' or consumer group 'g' in XREADGROUP with GROUP option",
        "NOPERM this user has no permissions to run the 'xinfo|groups' command",
        "ERR The user executing the script can't run this command or subcommand",
    ):
        assert not is_missing_key(BaseParser.parse_error(reply)), reply
