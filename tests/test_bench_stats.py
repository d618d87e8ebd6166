"""The benchmark's percentiles and verdicts."""

from __future__ import annotations

import pytest

from bench.stats import percentile, summarize, verdict


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([400.0, 100.0, 300.0, 200.0], 50) == 250.0
    # rank (5 - 1) * 0.9 = 3.6: 40% of the way from 400 to 500
    assert percentile([100.0, 200.0, 300.0, 400.0, 500.0], 90) == pytest.approx(460.0)
    assert percentile([7.0], 90) == 7.0
    assert percentile([1.0, 9.0], 0) == 1.0 and percentile([1.0, 9.0], 100) == 9.0


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_skips_unmeasured_values() -> None:
    summary = summarize([500.0, None, 700.0, 600.0])
    assert summary.count == 3
    assert (summary.p50, summary.min, summary.max) == (600.0, 500.0, 700.0)
    assert summary.p90 == pytest.approx(680.0)
    assert summarize([None, None]).p50 is None


def test_verdict_against_a_limit() -> None:
    assert verdict(600.0, 600.0) == "PASS"
    assert verdict(600.1, 600.0) == "MISS"
    assert verdict(None, 600.0) == "n/a"
