"""The rules of Grafana's dashboard-linter, for the memops dashboards, in Python.

Rule names follow github.com/grafana/dashboard-linter. ``lint(dashboard)``
returns one message per problem (empty when clean). The renderer runs it on
every dashboard before returning it; tests/test_dashboards_lint.py runs each
rule on the committed dashboards/*.json and shows that broken dashboards fail.

Where memops is stricter than the upstream linter: only ``stat`` and
``timeseries`` panels; ``increase()`` also needs ``$__rate_interval``; a
``_total`` metric is recognised by its name even with label matchers (upstream
misses ``foo_total{…}``); panel ids unique and grid positions set and inside the
24-column grid; every ``$variable`` a query references exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from memops.render import promql

PANEL_TYPES = frozenset({"stat", "timeseries"})
DATASOURCE_UIDS = frozenset({"$datasource", "${datasource}"})
RATE_INTERVAL = "$__rate_interval"
UID_MAX_LENGTH = 40
SCHEMA_VERSION = 39
GRID_WIDTH = 24

# Gauges whose names end in _total although they are not counters (Qdrant's
# /metrics). Reading them without rate() is correct; the counter rule skips them.
GAUGES_NAMED_TOTAL = frozenset(
    {
        "collections_total",
        "collections_vector_total",
        "collections_full_total",
        "collections_aggregated_total",
        "cluster_peers_total",
        "cluster_pending_operations_total",
    }
)

# Grafana's unit ids (packages/grafana-data/src/valueFormats/categories.ts), the
# subset dashboard-linter's panel-units-rule enumerates that monitoring uses.
VALID_UNITS = frozenset(
    {"none", "string", "short", "percent", "percentunit", "locale", "sci", "hex", "hex0x"}
    | {"bytes", "decbytes", "bits", "decbits", "kbytes", "deckbytes", "mbytes", "decmbytes"}
    | {"gbytes", "decgbytes", "tbytes", "dectbytes", "pbytes", "decpbytes"}
    | {"pps", "binBps", "Bps", "binbps", "bps", "KiBs", "KBs", "MiBs", "MBs", "GiBs", "GBs"}
    | {"dateTimeAsIso", "dateTimeAsIsoNoDateIfToday", "dateTimeAsUS", "dateTimeAsLocal"}
    | {"dateTimeAsLocalNoDateIfToday", "dateTimeAsSystem", "dateTimeFromNow"}
    | {"hertz", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations"}
    | {"dthms", "dtdhms", "timeticks", "clockms", "clocks"}
    | {"cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm"}
    | {"bool", "bool_yes_no", "bool_on_off", "celsius", "watt"}
)

# Variables Grafana defines itself.
GLOBAL_VARIABLES = frozenset(
    {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}
    | {"__dashboard", "__from", "__to", "__name", "__org", "__user", "__timeFilter"}
)
_VARIABLE_REF = re.compile(r"\$(?:\{([A-Za-z0-9_]+)(?::[A-Za-z]+)?\}|([A-Za-z0-9_]+))")
_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$",
    re.DOTALL,
)
_UID = re.compile(r"[A-Za-z0-9_-]+")


def lint(dashboard: Mapping[str, Any], expected_uid: str | None = None) -> list[str]:
    """Every problem of ``dashboard``, as messages naming the rule and the panel."""
    problems: list[str] = []
    for rule in RULES.values():
        problems += rule(dashboard)
    if expected_uid is not None and dashboard.get("uid") != expected_uid:
        problems.append(f"uid-stable-rule: uid {dashboard.get('uid')!r} must stay {expected_uid!r}")
    return problems


# --- helpers the live tests use too --------------------------------------------------------


def panels(dashboard: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Top-level panels plus panels nested in rows."""
    found: list[Mapping[str, Any]] = []
    for item in dashboard.get("panels", []) or []:
        found.append(item)
        found += item.get("panels", []) or []
    return found


def targets(dashboard: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(panel, target) for every target of every panel."""
    for item in panels(dashboard):
        for target in item.get("targets", []) or []:
            yield item, target


def variables(dashboard: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((dashboard.get("templating") or {}).get("list") or [])


def variable_query(variable: Mapping[str, Any]) -> str:
    query = variable.get("query")
    if isinstance(query, Mapping):
        query = query.get("query")
    return query if isinstance(query, str) else ""


def label_values_selector(query: str) -> str | None:
    """The series selector of ``label_values(selector, label)`` (None when there is none)."""
    match = _LABEL_VALUES.match(query)
    return match.group("selector") if match else None


def queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every target and every query variable's series selector."""
    found = [
        (f"panel {item.get('title')!r} target {target.get('refId')}", target.get("expr", ""))
        for item, target in targets(dashboard)
    ]
    for variable in variables(dashboard):
        if variable.get("type") == "query":
            selector = label_values_selector(variable_query(variable))
            if selector:
                found.append((f"variable {variable.get('name')!r}", selector))
    return found


def metric_names(dashboard: Mapping[str, Any]) -> set[str]:
    """Every metric name the dashboard's queries and variables read."""
    names: set[str] = set()
    for _, expr in queries(dashboard):
        names |= promql.metric_names(expr)
    return names


def expand(expr: str, values: Mapping[str, str] | None = None, rate_interval: str = "1m") -> str:
    """``expr`` with Grafana variables replaced, ready for Prometheus' HTTP API.

    ``$__rate_interval`` becomes ``rate_interval``; other variables take
    ``values[name]``, default ``.+`` (what the variables' All option sends).
    """
    values = dict(values or {})

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name == "__rate_interval":
            return rate_interval
        return values.get(name, ".+")

    return _VARIABLE_REF.sub(replace, expr)


# --- rules -----------------------------------------------------------------------------------


def _where(item: Mapping[str, Any]) -> str:
    return f"panel {item.get('id')!r} {item.get('title')!r}"


def rule_template_datasource(dashboard: Mapping[str, Any]) -> list[str]:
    found = [v for v in variables(dashboard) if v.get("type") == "datasource"]
    if len(found) != 1:
        return [f"template-datasource-rule: need one datasource variable, found {len(found)}"]
    variable = found[0]
    problems = []
    if variable.get("name") != "datasource":
        problems.append(f"template-datasource-rule: named {variable.get('name')!r}, not datasource")
    if variable.get("query") != "prometheus":
        problems.append(
            f"template-datasource-rule: query {variable.get('query')!r}, not prometheus"
        )
    return problems


def _rule_template(name: str) -> Any:
    def rule(dashboard: Mapping[str, Any]) -> list[str]:
        tag = f"template-{name}-rule"
        found = [v for v in variables(dashboard) if v.get("name") == name]
        if not found:
            return [f"{tag}: no {name} variable"]
        variable = found[0]
        problems = []
        if variable.get("type") != "query":
            problems.append(f"{tag}: type {variable.get('type')!r}, not query")
        if (variable.get("datasource") or {}).get("uid") not in DATASOURCE_UIDS:
            problems.append(f"{tag}: does not use the datasource variable")
        if variable.get("label") != name.capitalize():
            problems.append(f"{tag}: label should be {name.capitalize()!r}")
        if not variable.get("multi") or not variable.get("includeAll"):
            problems.append(f"{tag}: should be multi-select with an All option")
        if variable.get("allValue") != ".+":
            problems.append(f"{tag}: allValue should be '.+'")
        if variable.get("refresh") != 2:
            problems.append(f"{tag}: refresh should be 2 (on time range change)")
        query = variable_query(variable)
        match = _LABEL_VALUES.match(query)
        if not match or match.group("label") != name:
            problems.append(f"{tag}: query should be label_values(…, {name}): {query!r}")
        elif match.group("selector"):
            try:
                promql.tokenize(match.group("selector"))
            except promql.PromQLError as exc:
                problems.append(f"template-label-promql-rule: {name}: {exc}")
        return problems

    rule.__name__ = f"rule_template_{name}"
    return rule


def rule_uid(dashboard: Mapping[str, Any]) -> list[str]:
    uid = dashboard.get("uid")
    if not isinstance(uid, str) or not uid:
        return ["uid-rule: no uid"]
    if len(uid) > UID_MAX_LENGTH or not _UID.fullmatch(uid):
        return [f"uid-rule: {uid!r} must be ≤ {UID_MAX_LENGTH} letters, digits, '-' or '_'"]
    return []


def rule_dashboard(dashboard: Mapping[str, Any]) -> list[str]:
    problems = []
    if dashboard.get("schemaVersion") != SCHEMA_VERSION:
        problems.append(f"schema-rule: schemaVersion should be {SCHEMA_VERSION}")
    if dashboard.get("id") is not None:
        problems.append("schema-rule: id should be null in a provisioned dashboard")
    if dashboard.get("editable") is not False:
        problems.append("uneditable-dashboard-rule: editable should be false")
    if not dashboard.get("title"):
        problems.append("schema-rule: no title")
    if not panels(dashboard):
        problems.append("schema-rule: no panels")
    return problems


def rule_panel_type(dashboard: Mapping[str, Any]) -> list[str]:
    return [
        f"panel-type-rule: {_where(p)} is {p.get('type')!r}, only {sorted(PANEL_TYPES)} allowed"
        for p in panels(dashboard)
        if p.get("type") not in PANEL_TYPES
    ]


def rule_panel_id(dashboard: Mapping[str, Any]) -> list[str]:
    problems, seen = [], set()
    for item in panels(dashboard):
        panel_id = item.get("id")
        if not isinstance(panel_id, int) or isinstance(panel_id, bool) or panel_id < 1:
            problems.append(f"panel-id-rule: {_where(item)} needs a positive integer id")
        elif panel_id in seen:
            problems.append(f"panel-id-rule: {_where(item)} repeats id {panel_id}")
        seen.add(panel_id)
    return problems


def _by_id(panel_id: Any) -> tuple[bool, Any]:
    return panel_id is None, panel_id or 0


def rule_panel_grid(dashboard: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    cells: dict[tuple[int, int], Any] = {}
    for item in panels(dashboard):
        grid = item.get("gridPos") or {}
        values = [grid.get(k) for k in ("h", "w", "x", "y")]
        if not all(isinstance(v, int) and v >= 0 for v in values) or not grid["h"] * grid["w"]:
            problems.append(f"panel-gridpos-rule: {_where(item)} needs gridPos h, w, x, y")
            continue
        if grid["x"] + grid["w"] > GRID_WIDTH:
            problems.append(f"panel-gridpos-rule: {_where(item)} is wider than the grid")
        overlapping = {
            cells.setdefault((column, line), item.get("id"))
            for column in range(grid["x"], grid["x"] + grid["w"])
            for line in range(grid["y"], grid["y"] + grid["h"])
        } - {item.get("id")}
        if overlapping:
            shown = sorted(overlapping, key=_by_id)
            problems.append(f"panel-gridpos-rule: {_where(item)} overlaps panels {shown}")
    return problems


def rule_panel_title_description(dashboard: Mapping[str, Any]) -> list[str]:
    return [
        f"panel-title-description-rule: {_where(p)} needs a title and a description"
        for p in panels(dashboard)
        if not p.get("title") or not p.get("description")
    ]


def rule_panel_datasource(dashboard: Mapping[str, Any]) -> list[str]:
    problems = []
    for item in panels(dashboard):
        source = item.get("datasource") or {}
        if not isinstance(source, Mapping) or source.get("uid") not in DATASOURCE_UIDS:
            problems.append(f"panel-datasource-rule: {_where(item)} uses {source!r}")
        for target in item.get("targets", []) or []:
            source = target.get("datasource") or {}
            if not isinstance(source, Mapping) or source.get("uid") not in DATASOURCE_UIDS:
                problems.append(
                    f"panel-datasource-rule: {_where(item)} target {target.get('refId')} "
                    f"uses {source!r}"
                )
    return problems


def rule_panel_units(dashboard: Mapping[str, Any]) -> list[str]:
    problems = []
    for item in panels(dashboard):
        unit = ((item.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        if unit not in VALID_UNITS:
            problems.append(f"panel-units-rule: {_where(item)} has no or an invalid unit {unit!r}")
    return problems


def rule_panel_no_targets(dashboard: Mapping[str, Any]) -> list[str]:
    problems = []
    for item in panels(dashboard):
        found = item.get("targets") or []
        ref_ids = [t.get("refId") for t in found]
        if not found or not all(t.get("expr") for t in found):
            problems.append(f"panel-no-targets-rule: {_where(item)} needs targets with an expr")
        if len(set(ref_ids)) != len(ref_ids) or not all(ref_ids):
            problems.append(f"panel-no-targets-rule: {_where(item)} needs unique refIds")
    return problems


def _analyse(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(where, expr, parsed selectors or a PromQLError) for every target."""
    for item, target in targets(dashboard):
        where = f"{_where(item)} target {target.get('refId')}"
        expr = target.get("expr", "")
        try:
            yield where, expr, (promql.selectors(expr), promql.rate_calls(expr))
        except promql.PromQLError as exc:
            yield where, expr, exc


def rule_target_promql(dashboard: Mapping[str, Any]) -> list[str]:
    return [
        f"target-promql-rule: {where}: {parsed}"
        for where, _, parsed in _analyse(dashboard)
        if isinstance(parsed, promql.PromQLError)
    ]


def rule_target_rate_interval(dashboard: Mapping[str, Any]) -> list[str]:
    problems = []
    for where, _, parsed in _analyse(dashboard):
        if isinstance(parsed, promql.PromQLError):
            continue
        for call in parsed[1]:
            if call.range != RATE_INTERVAL:
                problems.append(
                    f"target-rate-interval-rule: {where}: {call.function}({call.argument}) "
                    f"should read selector[{RATE_INTERVAL}]"
                )
    return problems


def rule_target_counter_agg(dashboard: Mapping[str, Any]) -> list[str]:
    problems = []
    for where, _, parsed in _analyse(dashboard):
        if isinstance(parsed, promql.PromQLError):
            continue
        for selector in parsed[0]:
            name = selector.metric or ""
            if not name.endswith("_total") or name in GAUGES_NAMED_TOTAL:
                continue
            if selector.range is None or selector.function not in promql.RATE_FUNCTIONS:
                problems.append(
                    f"target-counter-agg-rule: {where}: counter {selector.text} is not "
                    "inside rate(), irate() or increase()"
                )
    return problems


def _rule_target_matcher(label: str) -> Any:
    def rule(dashboard: Mapping[str, Any]) -> list[str]:
        problems = []
        for where, _, parsed in _analyse(dashboard):
            if isinstance(parsed, promql.PromQLError):
                continue
            for selector in parsed[0]:
                if not selector.has_matcher(label, "=~", f"${label}"):
                    problems.append(
                        f'target-{label}-rule: {where}: {selector.text} lacks {label}=~"${label}"'
                    )
        return problems

    rule.__name__ = f"rule_target_{label}"
    return rule


def rule_target_variables(dashboard: Mapping[str, Any]) -> list[str]:
    known = {v.get("name") for v in variables(dashboard)} | GLOBAL_VARIABLES
    problems = []
    for where, expr in queries(dashboard):
        for match in _VARIABLE_REF.finditer(expr):
            name = match.group(1) or match.group(2)
            if name not in known:
                problems.append(f"template-variable-rule: {where} uses undefined ${name}")
    return problems


RULES = {
    "template-datasource-rule": rule_template_datasource,
    "template-job-rule": _rule_template("job"),
    "template-instance-rule": _rule_template("instance"),
    "template-variable-rule": rule_target_variables,
    "uid-rule": rule_uid,
    "schema-rule": rule_dashboard,
    "panel-type-rule": rule_panel_type,
    "panel-id-rule": rule_panel_id,
    "panel-gridpos-rule": rule_panel_grid,
    "panel-title-description-rule": rule_panel_title_description,
    "panel-datasource-rule": rule_panel_datasource,
    "panel-units-rule": rule_panel_units,
    "panel-no-targets-rule": rule_panel_no_targets,
    "target-promql-rule": rule_target_promql,
    "target-rate-interval-rule": rule_target_rate_interval,
    "target-counter-agg-rule": rule_target_counter_agg,
    "target-job-rule": _rule_target_matcher("job"),
    "target-instance-rule": _rule_target_matcher("instance"),
}
