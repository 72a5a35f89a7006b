"""Command line: ``feedback-worker run`` (also ``python -m feedback_worker run``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import pydantic
import structlog

from feedback_ingest.errors import ConfigurationError
from feedback_ingest.redis_errors import DENIED, TRANSIENT, access_denied
from feedback_worker import acl, dlq
from feedback_worker.clients import sync_redis
from feedback_worker.doctor import diagnose, render
from feedback_worker.health import check, health_key
from feedback_worker.logs import configure_logging
from feedback_worker.settings import WorkerSettings
from feedback_worker.worker import Worker

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def describe_invalid(exc: pydantic.ValidationError) -> str:
    """One line per problem, naming the setting; never the values (a URL may hold a password)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"])
        setting = f"FEEDBACK_{where.upper()}" if where else "settings"
        lines.append(f"  {setting}: {error['msg']}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedback-worker",
        description="Move feedback events from a Redis stream into MongoDB. "
        "Settings come from FEEDBACK_* environment variables (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="join the consumer group and process events until SIGTERM")
    commands.add_parser("doctor", help="check the servers for settings that can lose data")
    probe = commands.add_parser("check", help="exit 0 if this consumer's loop is alive")
    probe.add_argument("--ready", action="store_true", help="also require the servers to work")
    probe.add_argument("--max-age-s", type=float, default=30.0)
    access = commands.add_parser("acl", help="print the Redis ACL rules an account needs")
    access.add_argument("role", choices=list(acl.COMMANDS))
    access.add_argument("--explain", action="store_true", help="say why each command is needed")
    dlq = commands.add_parser("dlq", help="inspect and act on the dead-letter stream")
    actions = dlq.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="one line per dead-lettered entry")
    listing.add_argument("--count", type=int, default=100)
    show = actions.add_parser("show", help="every field of one entry")
    show.add_argument("id")
    again = actions.add_parser("replay", help="re-validate and re-submit entries")
    again.add_argument("ids", nargs="*", help="dead-letter ids (default: all)")
    drop = actions.add_parser("purge", help="delete entries for good")
    drop.add_argument("ids", nargs="*", help="dead-letter ids (default: all)")
    drop.add_argument("--yes", action="store_true", help="confirm the deletion")
    return parser


def _check(args: argparse.Namespace, settings: WorkerSettings) -> int:
    key = health_key(settings.stream, settings.consumer)
    with sync_redis(settings, socket_timeout_s=5) as client:
        healthy, why = check(client, key, max_age_s=args.max_age_s, need_ready=args.ready)
    print(f"{settings.consumer}: {why}")
    return EXIT_OK if healthy else EXIT_FAILED


def _dlq(args: argparse.Namespace, settings: WorkerSettings) -> int:
    client = sync_redis(settings)
    dead = settings.dead_letter_stream
    with client:
        if args.action == "list":
            for entry in dlq.list_dead(client, dead, args.count):
                print(f"{entry.dead_id}  {entry.reason}")
            return EXIT_OK
        if args.action == "show":
            found = dlq.get_dead(client, dead, args.id)
            if found is None:
                print(f"no dead-letter entry {args.id}", file=sys.stderr)
                return EXIT_FAILED
            for name, value in found.fields.items():
                print(f"{name.decode(errors='replace')}: {value.decode(errors='replace')}")
            return EXIT_OK
        if args.action == "replay":
            entries = dlq.list_dead(client, dead, 1_000_000)
            if args.ids:
                entries = [e for e in entries if e.dead_id in set(args.ids)]
            report = dlq.replay(client, settings.stream, dead, entries)
            for dead_id, reason in report.still_invalid.items():
                print(f"kept {dead_id}: {reason}")
            print(f"replayed {len(report.replayed)}, kept {len(report.still_invalid)}")
            return EXIT_FAILED if report.still_invalid else EXIT_OK
        if not args.yes:
            print("purge deletes dead-letter entries for good: add --yes", file=sys.stderr)
            return EXIT_CONFIG
        print(f"purged {dlq.purge(client, dead, args.ids)}")
        return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = WorkerSettings()
    except pydantic.ValidationError as exc:
        print(f"feedback-worker: invalid settings:\n{describe_invalid(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "acl":
        print(acl.rules(args.role, settings.stream))
        if args.explain:
            for command, why in acl.COMMANDS[args.role].items():
                print(f"  +{command:<14} {why}")
        return EXIT_OK
    if args.command in ("check", "dlq"):
        try:
            return _check(args, settings) if args.command == "check" else _dlq(args, settings)
        except DENIED as exc:
            print(f"feedback-worker: {access_denied(exc)}", file=sys.stderr)
            return EXIT_CONFIG
        except TRANSIENT as exc:
            print(f"feedback-worker: Redis unavailable: {exc}", file=sys.stderr)
            return EXIT_FAILED
    if args.command == "doctor":
        findings = asyncio.run(diagnose(settings))
        print(render(findings))
        return EXIT_FAILED if any(f.status == "fail" for f in findings) else EXIT_OK
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "run":
        try:
            asyncio.run(Worker(settings).run())
        except ConfigurationError as exc:
            structlog.get_logger(__name__).error("unsafe_to_run", error=str(exc))
            return EXIT_CONFIG
    return EXIT_OK
