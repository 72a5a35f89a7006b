"""Reclaiming pending entries: decide, from Redis's delivery counters, how to take each over.

Entries are inspected (XPENDING) before they are claimed (XCLAIM), because claiming is what
counts a delivery. An entry that was delivered once was most likely in the hands of a consumer
that crashed for another reason: such entries are claimed and handled together. An entry delivered
more than once may be what kills its consumers, so each one is claimed and handled alone, fewest
deliveries first: a poison entry then takes no innocent entry down with it, and only its own
counter grows (case C05). Once it has been delivered ``max_deliveries`` times it is claimed once
more and dead-lettered without being handled.
"""

from __future__ import annotations

from dataclasses import dataclass

from feedback_worker.reader import PendingEntry, entry_id_key


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    dead: list[PendingEntry]
    together: list[PendingEntry]
    alone: list[PendingEntry]


def plan_claims(rows: list[PendingEntry], max_deliveries: int) -> ClaimPlan:
    """Sort one page of pending entries into the three ways of taking them over."""
    dead = [r for r in rows if r.deliveries >= max_deliveries]
    together = [r for r in rows if r.deliveries <= 1 < max_deliveries]
    alone = sorted(
        (r for r in rows if 1 < r.deliveries < max_deliveries),
        key=lambda r: (r.deliveries, entry_id_key(r.entry_id)),
    )
    return ClaimPlan(dead, together, alone)
