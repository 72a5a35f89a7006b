"""feedback-worker: consume the feedback stream and land the newest event per key in MongoDB."""

from feedback_worker.settings import WorkerSettings
from feedback_worker.worker import Worker

__all__ = ["Worker", "WorkerSettings"]
