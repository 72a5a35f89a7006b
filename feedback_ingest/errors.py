"""The exception hierarchy shared by producers and workers.

Everything raised on purpose derives from :class:`FeedbackError`. Two branches tell callers what to
do: :class:`TransientError` (retry later, with backoff) and :class:`PermanentError` (retrying the
same input cannot help: reject it, or dead-letter it with the reason).
"""

from __future__ import annotations


class FeedbackError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigurationError(FeedbackError):
    """Settings or server state that make it unsafe to run (for example a missing unique index)."""


class AccessDenied(ConfigurationError):
    """A server refused the credentials, or a command the account is not allowed to run (ACL).

    Retrying cannot help until an operator fixes the account or the secret, so it is not a
    transient failure: producers raise it at once and workers exit with the configuration code,
    so a restart picks up a rotated secret.
    """


class TransientError(FeedbackError):
    """A failure that may pass: connection lost, timeout, primary stepped down."""


class RedisUnavailable(TransientError):
    """Redis could not be reached or did not answer, after the bounded retries."""


class MongoUnavailable(TransientError):
    """MongoDB could not be reached or did not confirm a write in time."""


class BacklogFull(TransientError):
    """The stream holds more unprocessed entries than the producer's configured bound."""


class PermanentError(FeedbackError):
    """A failure tied to one event: sending it again would fail the same way."""


class InvalidEvent(PermanentError):
    """An event breaks the wire contract.

    ``field`` names the offending field (its wire name), ``code`` is a stable machine-readable
    reason (listed in ``docs/wire-format.md``) and ``detail`` says what exactly is wrong.
    """

    def __init__(self, field: str, code: str, detail: str) -> None:
        self.field = field
        self.code = code
        self.detail = detail
        super().__init__(f"{field}: {detail} [{code}]")

    @property
    def reason(self) -> str:
        """The one-line reason stored with a dead-lettered entry."""
        return str(self)


class WriteRejected(PermanentError):
    """MongoDB refused to store one event's document (for example a value it cannot hold)."""
