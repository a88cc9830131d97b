"""Grafana dashboards (deploy/grafana/dashboards): well-formed, provisioned, and covering
what ops teams watch. That each query is valid PromQL over metrics the services expose is
shown against a real Prometheus in test_monitoring_stack."""

from __future__ import annotations

import pytest

from tests.deploy import manifests
from tests.deploy.manifests import DEPLOY, Doc

DASHBOARDS = manifests.dashboards()


def used_metrics(dashboard: Doc) -> set[str]:
    return {
        name
        for _, expr in manifests.grafana_exprs(dashboard)
        for name in manifests.metric_names(expr)
    }


def test_both_dashboards_ship() -> None:
    assert sorted(DASHBOARDS) == ["closeloop-outcomes.json", "closeloop-pipeline.json"]
    assert len({d["uid"] for d in DASHBOARDS.values()}) == len(DASHBOARDS)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_have_unique_ids_fit_the_grid_and_do_not_overlap(name: str) -> None:
    panels = DASHBOARDS[name]["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_query_goes_to_the_chosen_prometheus(name: str) -> None:
    dashboard = DASHBOARDS[name]
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    selected = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == selected, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == selected and target["expr"].strip(), panel["title"]


def test_the_pipeline_dashboard_shows_throughput_latency_lag_dead_letters_and_errors() -> None:
    used = used_metrics(DASHBOARDS["closeloop-pipeline.json"])
    assert {
        "closeloop_events_produced_total",  # throughput per stage
        "closeloop_events_consumed_total",
        "closeloop_intake_feedback_accepted_total",
        "closeloop_event_age_seconds_bucket",  # latency
        "closeloop_handler_duration_seconds_bucket",
        "closeloop:consumer_lag:sum",  # lag
        "closeloop_dlq_messages_total",  # dead letters
        "closeloop_http_requests_total",  # errors
        "closeloop_handler_retries_total",
    } <= used


def test_the_outcomes_dashboard_shows_volume_sla_satisfaction_reopens_and_time_to_resolve() -> None:
    used = used_metrics(DASHBOARDS["closeloop-outcomes.json"])
    assert {
        "closeloop_classifications_total",  # volume by root cause
        "closeloop_intake_feedback_accepted_total",  # and by channel
        "closeloop_sla_met_total",  # SLA compliance by team
        "closeloop_sla_breaches_total",
        "closeloop_csat_sum",  # CSAT
        "closeloop_satisfaction_ratio_bucket",
        "closeloop_cases_reopened_total",  # reopen rate
        "closeloop_case_resolution_seconds_bucket",  # time to resolve
    } <= used


def test_the_outcomes_dashboard_shows_customer_messages_promises_and_silences() -> None:
    used = used_metrics(DASHBOARDS["closeloop-outcomes.json"])
    assert {
        "closeloop_notifications_total",  # customer.notify by kind, channel, language
        "closeloop_promises_total",  # made, kept, broken, overdue by team
        "closeloop_silences_total",  # cases left without news, by priority and action
    } <= used
    panels = {p["title"]: p for p in DASHBOARDS["closeloop-outcomes.json"]["panels"]}
    promise_queries = [t["expr"] for t in panels["Promises by team and outcome"]["targets"]]
    assert all('team=~"$team"' in expr for expr in promise_queries)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_dashboard_leads_to_insights_report_and_the_cases_of_its_time_range(
    name: str,
) -> None:
    dashboard = DASHBOARDS[name]
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "insights"]
    assert variable["type"] == "textbox" and variable["query"].startswith("http")
    urls = {link["url"] for link in dashboard["links"] if link["type"] == "link"}
    assert "${insights}/reports" in urls
    period = "from=${__from:date:YYYY-MM-DD}&to=${__to:date:YYYY-MM-DD}"
    assert f"${{insights}}/v1/reports/cases.csv?{period}" in urls


def test_the_outcomes_panels_lead_to_their_exact_figures_and_cases() -> None:
    panels = {p["title"]: p for p in DASHBOARDS["closeloop-outcomes.json"]["panels"]}
    for title, by in (("Feedback by root cause", "root_cause"), ("Cases opened by team", "team")):
        urls = [link["url"] for link in panels[title]["links"]]
        assert any(url.startswith(f"${{insights}}/v1/reports/summary?by={by}&") for url in urls)


def test_the_pipeline_dashboard_shows_how_far_insights_reaches() -> None:
    used = used_metrics(DASHBOARDS["closeloop-pipeline.json"])
    assert {
        "closeloop_insights_events_folded_total",
        "closeloop_insights_latest_case_opened_timestamp_seconds",
        "closeloop_insights_pending_settled_total",
    } <= used


def test_the_provisioned_datasource_is_the_default_prometheus() -> None:
    (source,) = manifests.load(
        DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
    )["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (job) (rate(closeloop_x_total{route!~"/a|/b"}[5m]))', {"closeloop_x_total"}),
        (
            'histogram_quantile(0.9, sum by (le, team) (rate(closeloop_y_bucket{team=~"$team"}'
            "[$__rate_interval])))",
            {"closeloop_y_bucket"},
        ),
        ("a:b:sum > 10 and deriv(a:b:sum[15m]) > 0", {"a:b:sum"}),
        ("sum(x) / (sum(y) or sum(x) * 0) or vector(0)", {"x", "y"}),
        ('up{job=~"closeloop-.+"} == 0 unless on (job) z offset 1w', {"up", "z"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert manifests.metric_names(expr) == names
