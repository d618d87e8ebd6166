"""Percentiles and per-step summaries: pure functions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between the two nearest ranks
    (numpy's default), so p50 of an even count is the mean of the middle two."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float | None
    p90: float | None
    min: float | None
    max: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"count": self.count, "p50": self.p50, "p90": self.p90, "min": self.min, "max": self.max}


def summarize(values: Iterable[float | None]) -> Summary:
    """p50/p90/min/max of the values that exist (None = not measured)."""
    present = [v for v in values if v is not None]
    if not present:
        return Summary(0, None, None, None, None)
    return Summary(
        len(present),
        round(percentile(present, 50), 1),
        round(percentile(present, 90), 1),
        round(min(present), 1),
        round(max(present), 1),
    )


def verdict(value: float | None, limit: float) -> str:
    """PASS when measured and within ``limit``; MISS when over; n/a when not measured."""
    if value is None:
        return "n/a"
    return "PASS" if value <= limit else "MISS"
