"""Report figures from summed measures, and the API's dimensions (pure)."""

from __future__ import annotations

import typing

import pytest

from services.insights.api import CSV_COLUMNS, Dimension, filters
from services.insights.domain import DIMENSIONS
from services.insights.reports import (
    TIME_BUCKETS_S,
    bucket_of,
    figures,
    quantile,
    time_buckets,
)

OPEN = len(TIME_BUCKETS_S)


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0, 0), (300, 0), (301, 1), (3_600, 3), (604_800, OPEN - 1), (604_801, OPEN)],
)
def test_a_time_falls_in_the_bucket_whose_upper_edge_it_reaches(
    seconds: float, bucket: int
) -> None:
    assert bucket_of(seconds) == bucket


def test_quantiles_interpolate_inside_the_bucket_that_holds_the_rank() -> None:
    counts = [0.0] * (OPEN + 1)
    counts[1] = 2  # two times between 5 and 15 minutes
    counts[3] = 2  # two between 30 minutes and an hour
    assert quantile(0.25, counts) == (300 + 600 * 0.5, False)
    assert quantile(0.5, counts) == (900.0, False)
    assert quantile(0.75, counts) == (1_800 + 1_800 * 0.5, False)


def test_a_quantile_in_the_open_bucket_is_a_lower_bound_and_none_without_times() -> None:
    counts = [0.0] * (OPEN + 1)
    counts[OPEN] = 1
    assert quantile(0.5, counts) == (604_800, True)
    assert quantile(0.5, [0.0] * (OPEN + 1)) == (None, False)


def test_figures_are_ratios_of_sums_and_none_where_there_is_nothing_to_divide() -> None:
    sums = {
        "cases": 4,
        "resolved": 2,
        "reopened": 1,
        "escalated": 1,
        "surveys_sent": 2,
        "answered": 1,
        "csat_sum": 2,
        "csat_2": 1,
        "perceived_sum": 2,
        "expected_sum": 4,
        "dissatisfied": 1,
        "first_response_deadlines_known": 3,
        "first_response_deadlines_met": 2,
        **time_buckets("first_response", 120),
    }
    row = figures(sums)
    assert row["cases"] == 4
    assert row["reopen_rate"] == 0.5 and row["escalation_rate"] == 0.25
    assert row["survey_response_rate"] == 0.5 and row["no_response"] == 0.5
    assert row["csat_mean"] == 2.0 and row["csat_distribution"]["2"] == 1.0
    assert row["satisfaction_index"] == 50.0
    assert row["first_response_deadline_met"] == 0.6667
    assert row["resolution_deadline_met"] is None
    assert row["first_response_p50_s"] == 150.0 and row["resolve_p50_s"] is None
    assert figures({})["csat_mean"] is None


def test_the_api_offers_every_dimension_as_a_filter_a_grouping_and_a_column() -> None:
    assert typing.get_args(Dimension) == DIMENSIONS
    assert set(typing.get_type_hints(filters, include_extras=True)) - {"return"} == set(DIMENSIONS)
    assert set(DIMENSIONS) <= set(CSV_COLUMNS)
