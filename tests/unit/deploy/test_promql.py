"""The PromQL of deploy/prometheus/rules.yml and deploy/grafana/aftersale.json: every expression
parses (promql-parser), and names only metrics the worker exports or the rules record; recorded
names follow `level:metric:operations`; the dashboard has a fixed uid and takes its datasource
from its `datasource` variable everywhere."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.repo import ROOT

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "aftersale.json"
DASHBOARD_UID = "aftersale-deadlines"

#: Mirrors what the worker exports on its /metrics (streams/live/metrics.py; the interface of
#: issue 15): the dashboard and the rules may name these and what the rules record, nothing
#: else. A metric renamed or added on one side must be changed here too.
EXPORTED_METRICS: frozenset[str] = frozenset(
    {
        # counters
        "aftersale_orders_paid_total",
        "aftersale_cases_opened_total",
        "aftersale_refunds_total",
        "aftersale_cases_closed_total",
        "aftersale_auto_actions_total",
        "aftersale_reminders_total",
        "aftersale_duplicates_total",
        "aftersale_deadletters_total",
        "aftersale_rerouted_total",
        # histogram
        "aftersale_deadline_lateness_seconds_bucket",
        "aftersale_deadline_lateness_seconds_sum",
        "aftersale_deadline_lateness_seconds_count",
        # gauges
        "aftersale_open_cases",
        "aftersale_pending_deadlines",
        "aftersale_oldest_overdue_seconds",
        "aftersale_consumer_lag_records",
        "aftersale_catchup_age_seconds",
        "aftersale_ready",
        "aftersale_partitions_assigned",
    }
)

#: Grafana's variables, replaced by values of their kind before parsing (a variable missing here
#: is left in the expression and fails the test that parses it).
GRAFANA_VARIABLES: dict[str, str] = {
    "${datasource}": "prometheus",
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "$__range": "6h",
    "$job": "aftersale-deadlines",
}
#: A Grafana variable in any of its spellings: $name, ${name}, ${name:format}, [[name]].
VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]")

#: level:metric:operations (https://prometheus.io/docs/practices/rules/), each part a name.
RECORDED_NAME = re.compile(
    r"^(?P<level>[a-z][a-z0-9_]*):(?P<metric>[a-z][a-z0-9_]*):(?P<ops>[a-z][a-z0-9_]*)$"
)

PROMETHEUS_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Expression:
    """One PromQL expression and where it is (a rule's name, or a dashboard panel's target)."""

    where: str
    promql: str


# --- reading the files -------------------------------------------------------------------------


def load_rules(path: Path = RULES) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


def rule_name(rule: dict[str, Any]) -> str:
    return str(rule.get("record") or rule["alert"])


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def substitute(promql: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        promql = promql.replace(variable, value)
    return promql


def rule_expressions() -> list[Expression]:
    return [Expression(f"rules.yml {rule_name(r)}", str(r["expr"])) for r in load_rules()]


def dashboard_expressions() -> list[Expression]:
    return [
        Expression(f"aftersale.json {panel['title']!r} {target['refId']}", str(target["expr"]))
        for panel in panels(load_dashboard())
        for target in panel.get("targets", [])
    ]


def recorded_names() -> set[str]:
    return {str(rule["record"]) for rule in load_rules() if "record" in rule}


def metric_names(expr: promql_parser.Expr) -> list[str | None]:
    """The metric name of every selector in `expr` (None for a selector without one)."""
    names: list[str | None] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            by_matcher = [
                m.value
                for m in node.matchers.matchers
                if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal
            ]
            names.append(node.name or (by_matcher[0] if by_matcher else None))
        return True

    promql_parser.walk(expr, visit)
    return names


def unknown_metrics(promql: str, known: set[str] | frozenset[str]) -> list[str | None]:
    """The selectors of `promql` naming no known metric; ValueError if `promql` does not parse."""
    return [name for name in metric_names(promql_parser.parse(promql)) if name not in known]


EXPRESSIONS = rule_expressions() + dashboard_expressions()
KNOWN_METRICS = EXPORTED_METRICS | recorded_names()


# --- every expression --------------------------------------------------------------------------


def test_the_files_hold_expressions() -> None:
    # guards the parametrized tests below against an empty list (a file renamed, a key moved)
    assert len(rule_expressions()) >= 20
    assert len(dashboard_expressions()) >= 20


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=lambda e: e.where)
def test_the_expression_parses(expression: Expression) -> None:
    promql = substitute(expression.promql)
    assert not VARIABLE.findall(promql), "a Grafana variable missing from GRAFANA_VARIABLES"
    try:
        promql_parser.parse(promql)
    except ValueError as error:
        pytest.fail(f"{expression.where}: {error}\n{promql}")


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=lambda e: e.where)
def test_the_expression_names_only_exported_or_recorded_metrics(expression: Expression) -> None:
    promql = substitute(expression.promql)
    names = metric_names(promql_parser.parse(promql))
    assert names, "an expression without a metric"
    unknown = [name for name in names if name not in KNOWN_METRICS]
    assert not unknown, f"{expression.where} names metrics the worker does not export: {unknown}"


def test_the_checks_catch_a_broken_expression() -> None:
    # the two checks above, on expressions that must fail them
    with pytest.raises(ValueError, match="parenthesis"):
        unknown_metrics("sum(rate(aftersale_refunds_total[5m])", KNOWN_METRICS)
    assert unknown_metrics("rate(aftersale_refund_total[5m])", KNOWN_METRICS) == [
        "aftersale_refund_total"
    ]
    assert unknown_metrics('{job="aftersale-deadlines"}', KNOWN_METRICS) == [None]
    assert unknown_metrics('{__name__="aftersale_ready"} == 0', KNOWN_METRICS) == []
    assert VARIABLE.findall(substitute("rate(x[$__rate_interval]) * ${unknown:csv}")) == [
        "${unknown:csv}"
    ]


# --- the recording rules -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(recorded_names()))
def test_a_recorded_name_is_level_metric_operations(name: str) -> None:
    match = RECORDED_NAME.match(name)
    assert match, f"{name} is not level:metric:operations"
    assert match["level"] == "job", "summed over the workers of a job"
    assert match["metric"].startswith("aftersale_")
    assert not match["metric"].endswith("_total"), "a counter's name loses _total in a rate"
    assert re.fullmatch(r"(ratio_)?increase(1h|1d|30d)", match["ops"]), match["ops"]
    if match["ops"].startswith("ratio_"):
        assert "_per_" in match["metric"], "a ratio is <numerator>_per_<denominator>"


def test_the_rates_have_each_window() -> None:
    ratios = {name.rsplit(":", 1)[0] for name in recorded_names() if ":ratio_" in name}
    assert ratios == {
        "job:aftersale_refunds_per_orders_paid",
        "job:aftersale_quality_refunds_per_orders_paid",
        "job:aftersale_dispute_refunds_per_orders_paid",
        "job:aftersale_auto_refunds_per_refunds",
    }
    for ratio in ratios:
        windows = {name.rsplit("_", 1)[1] for name in recorded_names() if name.startswith(ratio)}
        assert windows == {"increase1h", "increase1d", "increase30d"}, ratio


def test_a_ratio_divides_sums_over_the_workers() -> None:
    # Numerators and denominators are summed over the workers before dividing: a recording rule
    # that reads the workers' own series sums instance and pod away at its top, and a rule that
    # divides reads only recorded series (never a worker's own counter).
    for rule in load_rules():
        if "record" not in rule:
            continue
        expr = promql_parser.parse(str(rule["expr"]))
        names = {name for name in metric_names(expr) if name is not None}
        if names & EXPORTED_METRICS:
            assert isinstance(expr, promql_parser.AggregateExpr), rule["record"]
            assert expr.modifier is not None, rule["record"]
            assert expr.modifier.type == promql_parser.AggModifierType.Without, rule["record"]
            assert {"instance", "pod"} <= set(expr.modifier.labels), rule["record"]
        if ":ratio_" in rule["record"]:
            assert names, rule["record"]
            assert names <= recorded_names(), rule["record"]


def test_every_recorded_ratio_is_on_the_dashboard() -> None:
    shown = " ".join(e.promql for e in dashboard_expressions())
    missing = [n for n in sorted(recorded_names()) if ":ratio_" in n and n not in shown]
    assert not missing


# --- the alerts --------------------------------------------------------------------------------


def test_every_alert_waits_has_a_severity_and_tells_what_to_look_at() -> None:
    alerts = [rule for rule in load_rules() if "alert" in rule]
    assert len(alerts) >= 7
    for alert in alerts:
        assert alert.get("for"), alert["alert"]
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]
        assert "look at" in alert["annotations"]["description"].lower(), alert["alert"]


# --- the dashboard -----------------------------------------------------------------------------


def test_the_dashboard_has_a_fixed_uid_and_a_current_schema() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == DASHBOARD_UID
    assert dashboard.get("id") is None, "an id is Grafana's own; provisioning sets it"
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 39


def test_the_datasource_is_a_variable() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == PROMETHEUS_DATASOURCE, variable["name"]


def test_every_panel_and_target_uses_the_datasource_variable() -> None:
    shown = [panel for panel in panels(load_dashboard()) if panel["type"] != "row"]
    assert shown
    for panel in shown:
        assert panel["datasource"] == PROMETHEUS_DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == PROMETHEUS_DATASOURCE, panel["title"]
    rows = [panel for panel in panels(load_dashboard()) if panel["type"] == "row"]
    assert not [row["title"] for row in rows if row.get("targets")], "a row queries nothing"


def test_the_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in panels(load_dashboard())]
    assert len(ids) == len(set(ids))


def test_the_query_variables_name_exported_metrics() -> None:
    for variable in load_dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
        assert found, variable["definition"]
        assert found[1] in EXPORTED_METRICS, variable["definition"]
        assert variable["query"]["query"] == variable["definition"]
