"""The figures of a report, from the sums of the measures of its cases (pure).

Every figure is a ratio of sums, so that the rollups of any days and dimensions add up
to the figure of their union. Times to first response and to resolution are counted in
buckets (:data:`TIME_BUCKETS_S`): their percentiles are read from the buckets by linear
interpolation inside the bucket that holds the rank, as Prometheus's
``histogram_quantile`` does; a rank in the last, open bucket is reported as that
bucket's lower edge (a lower bound, flagged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Literal

from shared.contracts import ExpectedOutcome

Interval = Literal["day", "week"]
# A rise matters when the figure grew by at least this share and, for counts, by at
# least MIN_RISE_CASES cases: a small number moving from 2 to 3 is noise.
RISE_SHARE = 0.30
MIN_RISE_CASES = 5
# The figures whose rise is bad news, and how each is compared: counts by their share
# of growth, rates by their difference in points (0.05 = 5 points).
RISES: dict[str, tuple[str, float]] = {
    "cases": ("count", RISE_SHARE),
    "reopen_rate": ("rate", 0.05),
    "escalation_rate": ("rate", 0.05),
    "dissatisfied": ("rate", 0.05),
}

# Upper edges, in seconds: 5, 15 and 30 minutes, 1, 2, 4 and 8 hours, 1, 2, 3 and 7 days.
TIME_BUCKETS_S: tuple[float, ...] = (
    300, 900, 1_800, 3_600, 7_200, 14_400, 28_800, 86_400, 172_800, 259_200, 604_800,
)  # fmt: skip
TIMES = ("first_response", "resolve")
CSAT_SCORES = (1, 2, 3, 4, 5)


def bucket_of(seconds: float) -> int:
    """The index of the bucket ``seconds`` falls in; len(TIME_BUCKETS_S) is the open one."""
    for index, edge in enumerate(TIME_BUCKETS_S):
        if seconds <= edge:
            return index
    return len(TIME_BUCKETS_S)


def bucket_measure(time: str, index: int) -> str:
    return f"{time}_bucket_{index}"


def time_buckets(time: str, seconds: float | None) -> dict[str, float]:
    """A case's contribution to the buckets of ``time``: one in its bucket, if known."""
    if seconds is None:
        return {}
    return {bucket_measure(time, bucket_of(max(0.0, seconds))): 1.0}


def quantile(q: float, counts: Sequence[float]) -> tuple[float | None, bool]:
    """The ``q`` quantile (0..1) of times counted in buckets; (value, is a lower bound)."""
    total = sum(counts)
    if total <= 0:
        return None, False
    rank = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            if index == len(TIME_BUCKETS_S):
                return TIME_BUCKETS_S[-1], True
            lower = TIME_BUCKETS_S[index - 1] if index else 0.0
            upper = TIME_BUCKETS_S[index]
            return lower + (upper - lower) * (rank - seen) / count, False
        seen += count
    return TIME_BUCKETS_S[-1], True


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def figures(sums: Mapping[str, float]) -> dict[str, Any]:
    """Every figure of a summary row from the sums of its cases' measures.

    - ``cases``: cases opened in the period;
    - ``first_response_s`` / ``resolve_s``: p50 and p90 over the cases that had one;
    - ``first_response_deadline_met`` / ``resolution_deadline_met``: share of the
      deadlines known to be met or missed that were met;
    - ``reopen_rate``: reopened cases per resolved case; ``escalation_rate``: escalated
      cases per case;
    - ``survey_response_rate``: answered surveys per case surveyed;
    - ``csat_mean`` and ``csat_distribution`` (share of answers per score);
    - ``satisfaction_index``: 100 x mean perceived quality / mean expected quality of the
      answers (100: the service met expectations; above: exceeded them);
    - ``delighted``, ``satisfied``, ``dissatisfied``, ``no_response``: shares of the
      cases surveyed;
    - ``promises_made``, ``_kept``, ``_broken``, ``_overdue`` and ``promise_kept_rate``
      (:func:`promise_figures`);
    - ``expectation_met_rate`` and ``expectation_met_by_outcome``
      (:func:`expectation_figures`).
    """
    s = dict(sums)
    get = s.get
    row: dict[str, Any] = {"cases": int(get("cases", 0))}
    for time in TIMES:
        counts = [get(bucket_measure(time, i), 0.0) for i in range(len(TIME_BUCKETS_S) + 1)]
        for name, q in (("p50", 0.5), ("p90", 0.9)):
            value, lower_bound = quantile(q, counts)
            row[f"{time}_{name}_s"] = _round(value, 1)
            if lower_bound:
                row[f"{time}_{name}_at_least"] = True
    row["first_response_deadline_met"] = _round(
        _ratio(get("first_response_deadlines_met", 0), get("first_response_deadlines_known", 0))
    )
    row["resolution_deadline_met"] = _round(
        _ratio(get("resolution_deadlines_met", 0), get("resolution_deadlines_known", 0))
    )
    row["reopen_rate"] = _round(_ratio(get("reopened", 0), get("resolved", 0)))
    row["escalation_rate"] = _round(_ratio(get("escalated", 0), get("cases", 0)))
    surveyed, answered = get("surveys_sent", 0), get("answered", 0)
    row["survey_response_rate"] = _round(_ratio(answered, surveyed))
    row["csat_mean"] = _round(_ratio(get("csat_sum", 0), answered), 3)
    row["csat_distribution"] = {
        str(score): _round(_ratio(get(f"csat_{score}", 0), answered)) for score in CSAT_SCORES
    }
    row["satisfaction_index"] = _round(
        _ratio(100 * get("perceived_sum", 0), get("expected_sum", 0)), 1
    )
    for verdict in ("delighted", "satisfied", "dissatisfied"):
        row[verdict] = _round(_ratio(get(verdict, 0), surveyed))
    row["no_response"] = _round(_ratio(surveyed - answered, surveyed))
    row.update(promise_figures(s))
    row.update(expectation_figures(s))
    return row


def promise_kept_rate(kept: float, broken: float, overdue_open: float) -> float | None:
    """Promises kept (on time or late) among the promises with a result: kept, broken,
    or overdue with no outcome yet (a deadline passed by the grace counts as not kept
    until the promise is recorded kept). None when no promise has a result."""
    return _round(_ratio(kept, kept + broken + overdue_open))


def promise_figures(sums: Mapping[str, float]) -> dict[str, Any]:
    """``promises_made``, ``_kept`` (on time or late), ``_broken``, ``_overdue`` (whose
    deadline passed by the grace with no outcome, whatever came after) and
    :func:`promise_kept_rate`."""
    get = sums.get
    counts = {
        name: int(get(name, 0))
        for name in ("promises_made", "promises_kept", "promises_broken", "promises_overdue")
    }
    rate = promise_kept_rate(
        get("promises_kept", 0), get("promises_broken", 0), get("promises_overdue_open", 0)
    )
    return {**counts, "promise_kept_rate": rate}


def expectation_figures(sums: Mapping[str, float]) -> dict[str, Any]:
    """``expectation_met_rate``: the share of the survey answers asked whether the customer
    got what they asked for that said yes; ``expectation_met_by_outcome``: per outcome
    asked for, how many answers were asked (``asked``) and that share (``rate``)."""
    get = sums.get
    by_outcome = {
        outcome.value: {
            "asked": int(get(f"expectations_asked_{outcome.value}", 0)),
            "rate": _round(
                _ratio(
                    get(f"expectations_met_{outcome.value}", 0),
                    get(f"expectations_asked_{outcome.value}", 0),
                )
            ),
        }
        for outcome in ExpectedOutcome
    }
    return {
        "expectations_asked": int(get("expectations_asked", 0)),
        "expectation_met_rate": _round(
            _ratio(get("expectations_met", 0), get("expectations_asked", 0))
        ),
        "expectation_met_by_outcome": by_outcome,
    }


def interval_start(day: date, interval: Interval) -> date:
    """The first day of the interval ``day`` is in (weeks start on Monday)."""
    return day - timedelta(days=day.weekday()) if interval == "week" else day


def _add(into: dict[str, float], sums: Mapping[str, float]) -> None:
    for name, value in sums.items():
        into[name] = into.get(name, 0.0) + value


def rising(current: Mapping[str, Any], previous: Mapping[str, Any]) -> list[str]:
    """The figures of :data:`RISES` that rose enough to matter from ``previous``: a count
    by at least :data:`RISE_SHARE` and :data:`MIN_RISE_CASES`, a rate by its points."""
    found = []
    for name, (kind, threshold) in RISES.items():
        now, before = current.get(name), previous.get(name)
        if now is None or before is None:
            continue
        if kind == "count":
            if now - before >= MIN_RISE_CASES and now >= before * (1 + threshold):
                found.append(name)
        elif now - before >= threshold and current.get("cases", 0) >= MIN_RISE_CASES:
            found.append(name)
    return found


def trend(
    sums_by_day: Mapping[date, Mapping[str, float]],
    start: date,
    end: date,
    interval: Interval,
) -> list[dict[str, Any]]:
    """The figures per interval from ``start``'s interval to ``end``'s (both days
    included), each with the change of its case count against the interval before it
    and the figures that rose enough to matter. ``sums_by_day`` must also hold the days
    of the interval before the first, for its comparison."""
    step = timedelta(days=7 if interval == "week" else 1)
    first = interval_start(start, interval)
    buckets: dict[date, dict[str, float]] = {}
    for day, sums in sums_by_day.items():
        _add(buckets.setdefault(interval_start(day, interval), {}), sums)
    rows = []
    previous = figures(buckets.get(first - step, {}))
    at = first
    while at <= end:
        current = figures(buckets.get(at, {}))
        before = previous["cases"]
        rows.append(
            {
                "start": at.isoformat(),
                **current,
                "cases_change": round((current["cases"] - before) / before, 4) if before else None,
                "rising": rising(current, previous),
            }
        )
        previous = current
        at += step
    return rows
