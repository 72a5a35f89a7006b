"""In-process counters and an end-to-end latency histogram, summarised in the worker's logs."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

#: Upper bounds (ms) of the latency buckets: roughly x1.25 steps from 1 ms to about 30 min.
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(round(1.25**i, 2) for i in range(65))


@dataclass
class LatencyHistogram:
    """Fixed log-scale buckets: constant memory, mergeable across processes."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    def observe(self, ms: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BOUNDS_MS, ms)] += 1

    def merge(self, counts: list[int]) -> None:
        for index, count in enumerate(counts):
            self.counts[index] += count

    @property
    def total(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket that holds quantile ``q`` (None when empty)."""
        total = self.total
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return LATENCY_BOUNDS_MS[min(index, len(LATENCY_BOUNDS_MS) - 1)]
        return LATENCY_BOUNDS_MS[-1]


@dataclass
class Metrics:
    """Totals since start: what one summary log line and the health check report."""

    counters: Counter[str] = field(default_factory=Counter)
    e2e_latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, **amounts: int) -> None:
        self.counters.update(amounts)

    def snapshot(self) -> dict[str, object]:
        return {
            **dict(sorted(self.counters.items())),
            "e2e_ms_p50": self.e2e_latency.quantile(0.5),
            "e2e_ms_p99": self.e2e_latency.quantile(0.99),
            "e2e_histogram": list(self.e2e_latency.counts),
        }
