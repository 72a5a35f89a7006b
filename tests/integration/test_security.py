"""TLS and least-privilege accounts, against a redis-server started with TLS and an ACL file.

Each test resets the server's command statistics and ACL log, runs one role's account through
every path it has, then checks both directions: the server refused nothing, and every command
the role is granted (``feedback_worker.acl``) was used. A rule that is missing fails the first
check; a rule nobody needs fails the second.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pymongo.errors
import pytest
import redis
import redis.asyncio
import redis.exceptions
from pymongo import AsyncMongoClient

from feedback_ingest import AsyncFeedbackProducer, FeedbackProducer, defaults
from feedback_ingest.errors import AccessDenied, RedisUnavailable
from feedback_ingest.wire import FeedbackEvent, encode_event
from feedback_worker import Worker, WorkerSettings, acl, cli
from feedback_worker.clients import async_mongo, sync_redis
from feedback_worker.consumers import remove_idle_consumers
from feedback_worker.deadletter import dead_letter_fields
from feedback_worker.doctor import diagnose
from feedback_worker.entries import Rejection, StreamEntry
from feedback_worker.health import check, health_key
from feedback_worker.retention import trim_acknowledged
from tests.conftest import ROOT, _unavailable
from tests.integration import secure
from tests.integration.helpers import run_until
from tests.integration.secure import BLIND_USER, SecureStack

pytestmark = pytest.mark.integration
Mongo = AsyncMongoClient[dict[str, Any]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    state = tmp_path_factory.mktemp("secure")
    try:
        started = secure.start(state)
    except (RuntimeError, SystemExit) as exc:
        _unavailable(f"TLS servers did not start: {exc}")
    try:
        yield started
    finally:
        secure.stop(started)


@pytest.fixture
def fresh(stack: SecureStack) -> SecureStack:
    stack.reset()
    return stack


def event(i: int) -> dict[str, Any]:
    return {"user_id": f"u{i}", "agent_id": "a", "source_id": "s", "source": "web", "value": i}


def settings_for(stack: SecureStack, role: str, database: str, **overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        **stack.tls_settings(role),
        "database": database,
        "consumer": "w1",
        "block_ms": 200,
        "redis_socket_timeout_s": 5,
        "redis_health_check_interval_s": 0.2,
        "mongo_timeout_ms": 2_500,
        "claim_min_idle_ms": 3_000,
        "claim_interval_s": 0.5,
        "trim_interval_s": 0.5,
        "consumer_expiry_ms": 3_000,
        "health_interval_s": 0.2,
        "shutdown_grace_s": 10,
        "log_format": "json",
    }
    values.update(overrides)
    return WorkerSettings(**values)


def assert_used_exactly(stack: SecureStack, role: acl.Role) -> None:
    assert stack.denials() == []
    assert set(stack.commands_used()) == set(acl.COMMANDS[role])


def test_producer_account_needs_exactly_its_rules(fresh: SecureStack) -> None:
    url = fresh.redis_url("producer")
    options = fresh.tls_options()

    async def submit_async() -> None:
        async with AsyncFeedbackProducer.from_url(url, client_options=options) as producer:
            await producer.submit(**event(20))

    asyncio.run(submit_async())
    # The stream exists now, so the backlog check measures it (XINFO GROUPS, then XLEN).
    with FeedbackProducer.from_url(url, client_options=options, max_backlog=1_000) as producer:
        producer.submit_many([event(i) for i in range(20)])
    assert_used_exactly(fresh, "producer")
    with fresh.admin() as admin:
        assert admin.xlen(defaults.STREAM) == 21


def test_producer_account_cannot_read_or_write_anything_else(fresh: SecureStack) -> None:
    with redis.Redis.from_url(fresh.redis_url("producer"), **fresh.tls_options()) as client:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.xreadgroup("g", "c", {defaults.STREAM: ">"})
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.xadd("other", {"v": "1"})
    other = FeedbackProducer.from_url(
        fresh.redis_url("producer"), client_options=fresh.tls_options(), stream="other"
    )
    with other, pytest.raises(AccessDenied, match="no permissions"):
        other.submit(**event(0))


def test_backpressure_refuses_to_run_blind_without_its_rules(fresh: SecureStack) -> None:
    """An account that may XADD but not see the backlog gets AccessDenied, not an unbounded
    stream (the check used to treat the refusal as "no stream yet")."""
    with fresh.admin() as admin:
        admin.execute_command("ACL", "SETUSER", BLIND_USER, "on", f">{BLIND_USER}", "~*", "+xadd")
    url = f"rediss://{BLIND_USER}:{BLIND_USER}@127.0.0.1:{fresh.redis_port}/0"
    with FeedbackProducer.from_url(url, client_options=fresh.tls_options()) as unbounded:
        unbounded.submit(**event(0))  # without a bound nothing else is needed
    bounded = FeedbackProducer.from_url(url, client_options=fresh.tls_options(), max_backlog=10)
    with bounded, pytest.raises(AccessDenied, match="xinfo"):
        bounded.submit(**event(1))


async def test_trim_refuses_to_run_blind_without_its_rules(fresh: SecureStack) -> None:
    """Without XINFO GROUPS the trim cannot know what is safe: it raises, never "nothing to do"
    (the refusal used to read as a missing stream, and the stream grew without bound)."""
    rules = acl.rules("worker").replace(" +xinfo|groups", "").split()
    with fresh.admin() as admin:
        admin.execute_command("ACL", "SETUSER", BLIND_USER, "on", f">{BLIND_USER}", *rules)
        admin.xadd(defaults.STREAM, {"v": "1"})
    url = f"rediss://{BLIND_USER}:{BLIND_USER}@127.0.0.1:{fresh.redis_port}/0"
    client = redis.asyncio.Redis.from_url(url, **fresh.tls_options())
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            await trim_acknowledged(client, defaults.STREAM)
    finally:
        await client.aclose()


async def test_a_refusal_inside_the_consumer_script_is_access_denied(fresh: SecureStack) -> None:
    """Redis reports an ACL refusal inside a script as a plain error, not NOPERM."""
    rules = acl.rules("worker").replace(" +xinfo|consumers", "").split()
    with fresh.admin() as admin:
        admin.execute_command("ACL", "SETUSER", BLIND_USER, "on", f">{BLIND_USER}", *rules)
        admin.xgroup_create(defaults.STREAM, defaults.GROUP, id="0", mkstream=True)
    url = f"rediss://{BLIND_USER}:{BLIND_USER}@127.0.0.1:{fresh.redis_port}/0"
    client = redis.asyncio.Redis.from_url(url, **fresh.tls_options())
    try:
        with pytest.raises(AccessDenied, match="can't run this command"):
            await remove_idle_consumers(client, defaults.STREAM, defaults.GROUP, 1000, "w1")
    finally:
        await client.aclose()


async def test_worker_account_needs_exactly_its_rules(
    fresh: SecureStack, names: dict[str, str]
) -> None:
    """Every path of the worker over TLS to both servers: start, read, write, dead-letter,
    claim a dead consumer's entries, trim, heartbeat, and the liveness probe."""
    settings = settings_for(fresh, "worker", names["database"])
    options = fresh.tls_options()
    async with AsyncFeedbackProducer.from_url(
        fresh.redis_url("producer"), client_options=options
    ) as producer:
        await producer.submit_many([event(i) for i in range(30)])
    with sync_redis(settings) as raw:
        raw.xadd(defaults.STREAM, {"v": "1", "garbage": "yes"})  # poison
        # A consumer that reads five entries and dies: the worker must claim them.
        raw.xgroup_create(defaults.STREAM, defaults.GROUP, id="0", mkstream=True)
        raw.xreadgroup(defaults.GROUP, "ghost", {defaults.STREAM: ">"}, count=5)
    worker = Worker(settings, handle_signals=False)
    mongo = async_mongo(settings)
    collection = mongo[names["database"]][defaults.COLLECTION]

    async def done() -> bool:
        counters = worker.metrics.counters
        return (
            await collection.count_documents({}) == 30
            and counters["dead_lettered"] == 1
            and counters["trimmed"] >= 26
            and counters["consumers_removed"] == 1
        )

    try:
        await run_until([worker], done, timeout_s=90)
    finally:
        await mongo.drop_database(names["database"])
        await mongo.close()
    with sync_redis(settings) as probe:
        key = health_key(defaults.STREAM, "w1")
        healthy, why = check(probe, key, max_age_s=60, need_ready=True)
        assert healthy, why
        # A pooled connection idle longer than the health-check interval is PINGed before its
        # next command: a worker's connections are, after a quiet spell.
        await asyncio.sleep(3 * settings.redis_health_check_interval_s)
        assert check(probe, key, max_age_s=60, need_ready=True)[0]
    assert worker.metrics.counters["claimed"] >= 5
    with fresh.admin() as admin:  # the ghost went once its entries had been taken over
        consumers: Any = admin.xinfo_consumers(defaults.STREAM, defaults.GROUP)
        assert [c["name"] for c in consumers] == [b"w1"]
    assert_used_exactly(fresh, "worker")
    with fresh.admin() as admin:
        assert admin.xlen(defaults.dead_letter_stream_for(defaults.STREAM)) == 1


def test_operator_account_needs_exactly_its_rules(
    fresh: SecureStack, names: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """``dlq list|show|replay|purge`` and ``doctor`` through the command line, over TLS."""
    dead = defaults.dead_letter_stream_for(defaults.STREAM)
    encoded = encode_event(FeedbackEvent.create(**event(1)))
    valid = {name.encode(): value.encode() for name, value in encoded.items()}
    entries = [
        Rejection(StreamEntry("1-1", valid), "write rejected: test"),
        Rejection(StreamEntry("1-2", {b"v": b"9"}), "v: unsupported version"),
    ]
    with fresh.admin() as admin:
        for rejection in entries:
            fields = dead_letter_fields(
                rejection, stream=defaults.STREAM, group=defaults.GROUP, consumer="c", deliveries=5
            )
            admin.xadd(dead, fields)  # type: ignore[arg-type]
        # An entry a consumer holds, so that the doctor looks at the oldest pending one.
        admin.xadd(defaults.STREAM, valid)  # type: ignore[arg-type]
        admin.xgroup_create(defaults.STREAM, defaults.GROUP, id="0")
        admin.xreadgroup(defaults.GROUP, "busy", {defaults.STREAM: ">"})
        admin.config_resetstat()
    for name, value in secure_env(fresh, "operator", names["database"]).items():
        monkeypatch.setenv(name, value)
    dead_ids = [line.split()[0] for line in run_cli(capsys, "dlq", "list")[1].splitlines()]
    assert len(dead_ids) == 2
    assert "write rejected" in run_cli(capsys, "dlq", "show", dead_ids[0])[1]
    code, out = run_cli(capsys, "dlq", "replay")
    assert (code, out.splitlines()[-1]) == (cli.EXIT_FAILED, "replayed 1, kept 1")
    assert run_cli(capsys, "dlq", "purge", "--yes") == (cli.EXIT_OK, "purged 1\n")
    code, report = run_cli(capsys, "doctor")
    assert "CONFIG GET is not allowed" not in report
    assert "ok    redis.maxmemory-policy  noeviction" in report
    assert "1 pending" in report
    assert fresh.passwords["operator"] not in report
    assert code == cli.EXIT_OK, report
    assert_used_exactly(fresh, "operator")
    with fresh.admin() as admin:
        assert admin.xlen(defaults.STREAM) == 2  # the held entry and the replayed one


def secure_env(stack: SecureStack, role: str, database: str) -> dict[str, str]:
    values = {**stack.tls_settings(role), "database": database}
    return {f"FEEDBACK_{name.upper()}": str(value) for name, value in values.items()}


def run_cli(capsys: Any, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def test_wrong_password_stops_the_worker_with_the_configuration_code(
    stack: SecureStack, names: dict[str, str]
) -> None:
    """A refused account is not an outage: no retrying for ever, exit 2, password not shown."""
    env = {**os.environ, **secure_env(stack, "worker", names["database"])}
    wrong = secrets.token_hex(10)
    env["FEEDBACK_REDIS_URL"] = stack.redis_url("worker", wrong)
    done = subprocess.run(
        [sys.executable, "-m", "feedback_worker", "run"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == cli.EXIT_CONFIG, output
    assert "Redis refused the account" in output
    assert wrong not in output
    env["FEEDBACK_REDIS_URL"] = stack.redis_url("operator", wrong)
    listing = subprocess.run(
        [sys.executable, "-m", "feedback_worker", "dlq", "list"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == cli.EXIT_CONFIG, listing.stderr
    assert "Redis refused the account" in listing.stderr and wrong not in listing.stderr
    refused = stack.redis_url("operator", wrong)
    findings = asyncio.run(diagnose(settings_for(stack, "operator", "d", redis_url=refused)))
    redis_finding = next(f for f in findings if f.check == "redis")
    assert redis_finding.status == "fail"
    assert "Redis refused the account" in redis_finding.detail, redis_finding
    with pytest.raises(AccessDenied):
        FeedbackProducer.from_url(
            stack.redis_url("producer", wrong), client_options=stack.tls_options()
        ).submit(**event(0))


@pytest.mark.parametrize("client", ["plain text", "no client certificate", "unknown CA"])
def test_tls_is_required_and_the_server_certificate_verified(
    stack: SecureStack, client: str
) -> None:
    url, options = {
        "plain text": (stack.redis_url("producer").replace("rediss://", "redis://"), {}),
        "no client certificate": (stack.redis_url("producer"), {"ssl_ca_certs": str(stack.ca)}),
        "unknown CA": (stack.redis_url("producer"), {}),
    }[client]
    producer = FeedbackProducer.from_url(url, client_options=options, attempts=1)
    with producer, pytest.raises(RedisUnavailable):
        producer.submit(**event(0))


async def test_mongodb_without_a_client_certificate_is_refused(
    stack: SecureStack, names: dict[str, str]
) -> None:
    settings = settings_for(
        stack, "worker", names["database"], mongodb_tls_cert_key_file=None, mongo_timeout_ms=1_500
    )
    mongo: Mongo = async_mongo(settings)
    try:
        with pytest.raises(pymongo.errors.ServerSelectionTimeoutError):
            await mongo.admin.command("ping")
    finally:
        await mongo.close()
