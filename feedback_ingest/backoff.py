"""The one backoff rule for every retry in the project: exponential, capped, with jitter."""

from __future__ import annotations

import random

from feedback_ingest import defaults


def compute_backoff_ms(
    attempt: int,
    *,
    base_ms: int = defaults.BACKOFF_BASE_MS,
    cap_ms: int = defaults.BACKOFF_CAP_MS,
    rng: random.Random | None = None,
) -> float:
    """Return how long to wait before retry number ``attempt`` (0 for the first retry).

    The delay is drawn between half and all of the exponential bound: a fleet of clients that lost
    the same server spreads out instead of reconnecting in lockstep, and no retry comes instantly.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    bound = min(float(cap_ms), base_ms * 2.0 ** min(attempt, 32))
    return (rng or random).uniform(bound / 2, bound)
