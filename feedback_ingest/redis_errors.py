"""How Redis failures are classified, for producers and workers alike.

redis-py raises :class:`~redis.exceptions.AuthenticationError` as a kind of ``ConnectionError``,
so a wrong password would look like an outage and be retried for ever. It is checked first and
turned into :class:`~feedback_ingest.errors.AccessDenied`, like a command the ACL refuses.
"""

from __future__ import annotations

import redis.exceptions

from feedback_ingest.errors import AccessDenied

#: The account is wrong (WRONGPASS, NOAUTH) or may not run the command or key (NOPERM).
DENIED = (redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError)

#: Worth retrying with backoff: the connection broke or a reply did not come in time.
#: (redis-py's TimeoutError is not a ConnectionError.) Test ``DENIED`` before this.
TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def access_denied(exc: redis.exceptions.RedisError) -> AccessDenied:
    """The named error for ``exc``, one of ``DENIED``; the server's text never holds a password."""
    return AccessDenied(f"Redis refused the account or command: {exc}")


def is_missing_key(exc: redis.exceptions.ResponseError) -> bool:
    """True for the reply to XINFO on a stream that does not exist (``ERR no such key``).

    Callers treat only that as "no stream yet"; any other refusal (NOPERM above all) is raised,
    so a check that cannot run is never mistaken for an empty stream.
    """
    # redis-py strips the "ERR " code; a NOGROUP reply ("NOGROUP No such key ...") is not this.
    return str(exc).startswith("no such key")


def is_denied_in_script(exc: redis.exceptions.ResponseError) -> bool:
    """True when the ACL refused a command inside a Lua script: Redis replies with a plain error
    there, not NOPERM, so redis-py cannot raise NoPermissionError for it."""
    return "can't run this command" in str(exc)
