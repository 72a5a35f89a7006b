"""Redis ACL rules for the three kinds of account: the least each one needs, and why.

``feedback-worker acl producer|worker|operator`` prints the rules for the configured stream, to
paste after ``ACL SETUSER <name> on >password`` or into an ACL file line. The integration tests
build their ACL file from these same rules and check both ways: nothing the code sends is
refused, and every command granted is used.
"""

from __future__ import annotations

from typing import Literal

from feedback_ingest import defaults
from feedback_worker.health import health_key

Role = Literal["producer", "worker", "operator"]

#: Command (or container|subcommand) -> what it is needed for.
PRODUCER_COMMANDS: dict[str, str] = {
    "xadd": "append events",
    "xinfo|groups": "backpressure: what each group has not acknowledged (with max_backlog)",
    "xlen": "backpressure: the stream's length (with max_backlog)",
}

WORKER_COMMANDS: dict[str, str] = {
    "xgroup|create": "create the group (and the stream) at start and after a flush",
    "xreadgroup": "read new entries, and this consumer's own pending ones after a restart",
    "xack": "acknowledge entries once their write is durable",
    "xpending": "inspect idle entries and delivery counts before claiming; the trim bound",
    "xclaim": "take over a dead consumer's entries; keep ownership during a long write",
    "eval": "remove consumers gone with nothing pending, checked and removed in one script",
    "xinfo|consumers": "(in that script) each consumer's pending count and idle time",
    "xgroup|delconsumer": "(in that script) remove the consumer",
    "xadd": "append poison entries to the dead-letter stream",
    "multi": "dead-letter and acknowledge an entry in one transaction",
    "exec": "dead-letter and acknowledge an entry in one transaction",
    "xinfo|groups": "the trim bound: every group's last delivered entry",
    "xtrim": "remove entries every group has acknowledged",
    "set": "the heartbeat key (liveness and readiness)",
    "get": "`feedback-worker check` reads the heartbeat",
    "ping": "health check of a pooled connection that sat idle",
}

OPERATOR_COMMANDS: dict[str, str] = {
    "xrange": "`dlq list|show|replay` read the dead-letter stream",
    "xadd": "`dlq replay` re-submits entries to the stream",
    "multi": "`dlq replay`: re-submit and remove an entry in one transaction",
    "exec": "`dlq replay`: re-submit and remove an entry in one transaction",
    "xdel": "`dlq replay|purge` remove handled dead-letter entries",
    "del": "`dlq purge` with no ids drops the dead-letter stream",
    "xlen": "`dlq purge` counts what it drops",
    "xinfo|groups": "`doctor`: the group, its lag",
    "xpending": "`doctor`: the oldest pending entry",
    "config|get": "`doctor`: eviction policy and persistence",
    "ping": "`doctor`: reachability",
}

COMMANDS: dict[Role, dict[str, str]] = {
    "producer": PRODUCER_COMMANDS,
    "worker": WORKER_COMMANDS,
    "operator": OPERATOR_COMMANDS,
}


def _literal(pattern: str) -> str:
    """Escape glob characters, so a stream name matches only itself in a key pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in pattern)


def key_patterns(role: Role, stream: str = defaults.STREAM) -> list[str]:
    """The keys an account of ``role`` may touch: never more than the stream's own."""
    if role == "producer":
        return [_literal(stream)]
    dead = defaults.dead_letter_stream_for(stream)
    heartbeats = _literal(health_key(stream, "")) + "*"
    return [_literal(stream), _literal(dead), heartbeats]


def rules(role: Role, stream: str = defaults.STREAM) -> str:
    """ACL rules for ``role``: its keys, no channels, and only its commands."""
    keys = " ".join(f"~{pattern}" for pattern in key_patterns(role, stream))
    commands = " ".join(f"+{name}" for name in COMMANDS[role])
    return f"resetkeys {keys} resetchannels -@all {commands}"
