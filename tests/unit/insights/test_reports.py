"""Report figures from summed measures, and the API's dimensions (pure)."""

from __future__ import annotations

import typing
from datetime import date

import pytest

from services.insights.api import CSV_COLUMNS, Dimension, filters
from services.insights.domain import DIMENSIONS
from services.insights.reports import (
    TIME_BUCKETS_S,
    bucket_of,
    figures,
    interval_start,
    promise_kept_rate,
    quantile,
    rising,
    time_buckets,
    trend,
)
from shared.contracts import ExpectedOutcome

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


def test_the_promise_kept_rate_counts_each_promise_with_a_result_once() -> None:
    # 10 promises: 6 kept (1 of them late, after going overdue), 2 broken (1 of them
    # after going overdue), 3 went overdue and 1 of those has no outcome yet, 1 open.
    sums = {
        "promises_made": 10,
        "promises_kept": 6,
        "promises_broken": 2,
        "promises_overdue": 3,
        "promises_overdue_open": 1,
    }
    row = figures(sums)
    assert (row["promises_made"], row["promises_kept"], row["promises_broken"]) == (10, 6, 2)
    assert row["promises_overdue"] == 3
    assert row["promise_kept_rate"] == round(6 / 9, 4)  # the open one has no result yet
    assert promise_kept_rate(0, 0, 2) == 0.0  # overdue without an outcome: not kept
    assert promise_kept_rate(0, 0, 0) is None
    assert figures({"promises_made": 2})["promise_kept_rate"] is None  # none has a result
    assert figures({})["promises_made"] == 0


def test_the_expectation_met_rate_is_over_the_answers_asked_in_all_and_per_outcome() -> None:
    sums = {
        "expectations_asked": 5,
        "expectations_met": 3,
        "expectations_asked_refund": 3,
        "expectations_met_refund": 1,
        "expectations_asked_apology": 1,
        "expectations_met_apology": 1,
    }
    row = figures(sums)
    assert row["expectations_asked"] == 5 and row["expectation_met_rate"] == 0.6
    by_outcome = row["expectation_met_by_outcome"]
    assert by_outcome["refund"] == {"asked": 3, "rate": 0.3333}
    assert by_outcome["apology"] == {"asked": 1, "rate": 1.0}
    assert by_outcome["repair"] == {"asked": 0, "rate": None}
    assert set(by_outcome) == {o.value for o in ExpectedOutcome}
    assert figures({})["expectation_met_rate"] is None


def test_the_api_offers_every_dimension_as_a_filter_a_grouping_and_a_column() -> None:
    assert typing.get_args(Dimension) == DIMENSIONS
    assert set(typing.get_type_hints(filters, include_extras=True)) - {"return"} == set(DIMENSIONS)
    assert set(DIMENSIONS) <= set(CSV_COLUMNS)


def test_weeks_start_on_monday() -> None:
    assert interval_start(date(2026, 12, 2), "week") == date(2026, 11, 30)  # a Wednesday
    assert interval_start(date(2026, 12, 2), "day") == date(2026, 12, 2)


def test_a_trend_compares_each_interval_with_the_one_before_and_flags_what_matters() -> None:
    def day(cases: int, reopened: int = 0, resolved: int = 0) -> dict[str, float]:
        return {"cases": cases, "reopened": reopened, "resolved": resolved}

    sums = {
        date(2026, 11, 23): day(10),  # the week before the first: compared with
        date(2026, 11, 30): day(8, resolved=10),
        date(2026, 12, 2): day(6, reopened=1),
        date(2026, 12, 7): day(20, reopened=4, resolved=10),
    }
    rows = trend(sums, date(2026, 12, 1), date(2026, 12, 8), "week")
    assert [row["start"] for row in rows] == ["2026-11-30", "2026-12-07"]
    assert [row["cases"] for row in rows] == [14, 20]
    # 10 to 14 is 40% but only 4 more cases: not a rise.
    assert rows[0]["cases_change"] == 0.4 and rows[0]["rising"] == []
    # 14 to 20 is 43% and 6 more cases: a rise; the reopen rate 0.1 to 0.4 too.
    assert rows[1]["rising"] == ["cases", "reopen_rate"]


def test_a_small_count_moving_is_not_a_rise() -> None:
    assert rising({"cases": 3}, {"cases": 1}) == []
    assert rising({"cases": 9}, {"cases": 7}) == []  # +2 only
    assert rising({"cases": 12}, {"cases": 7}) == ["cases"]
    assert rising({"cases": 12}, {"cases": 10}) == []  # +5 but 20%
    rows = trend({}, date(2026, 12, 1), date(2026, 12, 2), "day")
    assert [(row["cases"], row["cases_change"], row["rising"]) for row in rows] == [
        (0, None, []),
        (0, None, []),
    ]
