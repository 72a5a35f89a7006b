"""Command line: ``feedback-worker run`` (also ``python -m feedback_worker run``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import pydantic
import structlog

from feedback_ingest.errors import ConfigurationError
from feedback_worker.doctor import diagnose, render
from feedback_worker.logs import configure_logging
from feedback_worker.settings import WorkerSettings
from feedback_worker.worker import Worker

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedback-worker",
        description="Move feedback events from a Redis stream into MongoDB. "
        "Settings come from FEEDBACK_* environment variables (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="join the consumer group and process events until SIGTERM")
    commands.add_parser("doctor", help="check the servers for settings that can lose data")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = WorkerSettings()
    except pydantic.ValidationError as exc:
        print(f"feedback-worker: invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
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
