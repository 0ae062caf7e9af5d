"""Load and validate ``templates/observability.yml`` (and a profile) into typed objects.

The data file is the one place for every threshold, selector, severity, ``for``
duration, the memory-service metric prefix and the runbook base URL. Validation
is strict: unknown keys, wrong types, unknown severities, malformed durations,
rule names without their component prefix and name collisions are refused with
one line that names the file and the field, e.g.::

    templates/observability.yml: rules.redis[2].threshold: expected a number, got 'high'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from memops.errors import Refused
from memops.paths import PROJECT_DIR

SEVERITIES = ("critical", "warning", "info")
METRIC_TYPES = ("counter", "gauge", "histogram", "summary")
# Prometheus job names every consumer of the data file relies on (scrape configs,
# rules, dashboards): see the observability plan.
REQUIRED_JOBS = (
    "redis",
    "postgresql",
    "qdrant",
    "node",
    "prometheus",
    "alertmanager",
    "memory-service",
    # the replicated tiers: their jobs exist only where the inventory has such hosts
    "redis-sentinel",
    "patroni",
    "etcd",
)

_DURATION = re.compile(r"^(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?$")
_DURATION_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_SECONDS = {
    "y": 365 * 86400,
    "w": 7 * 86400,
    "d": 86400,
    "h": 3600,
    "m": 60,
    "s": 1,
    "ms": 0.001,
}
_METRIC_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ALERT_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_PROCEDURE_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_URL = re.compile(r"^https?://[^\s/]+(/[^\s]*)?$")
# The only Prometheus template forms an annotation may use: the promtool tests expand them.
PROM_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_PROM_VALUE = re.compile(
    r"^\s*\$value\s*(\|\s*(humanize|humanizePercentage|humanizeDuration|humanize1024)\s*)?$"
)
PROM_LABEL = re.compile(r"^\s*\$labels\.([A-Za-z_][A-Za-z0-9_]*)\s*$")


class ConfigError(Refused, ValueError):
    """Bad data: ``str(error)`` is the one line to show (file: field: problem)."""

    def __init__(self, source: Path | str, where: str, problem: str) -> None:
        self.source = shown_path(source)
        self.where = where
        self.problem = problem
        super().__init__(
            f"{self.source}: {where}: {problem}" if where else f"{self.source}: {problem}"
        )


def shown_path(path: Path | str) -> str:
    candidate = Path(path)
    try:
        return str(candidate.resolve().relative_to(PROJECT_DIR))
    except ValueError:
        return str(path)


def duration_seconds(text: str) -> float:
    """Seconds of a validated Prometheus duration (``1h30m``, ``0s``, ``500ms``)."""
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for a whole number of seconds (``90`` -> ``1m30s``)."""
    remaining = round(seconds)
    if remaining == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNIT_SECONDS[unit])
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass(frozen=True)
class Series:
    series: str  # Jinja-templated: [[ prefix ]] names the memory-service metric prefix
    values: str  # promtool's expanding notation, e.g. "0+10x60"


@dataclass(frozen=True)
class AlertTest:
    """One promtool case: input series and, for the firing case, what the alert looks like."""

    series: tuple[Series, ...]
    value: str | None = None  # how the description renders $value (firing case)
    labels: Mapping[str, str] = field(default_factory=dict)  # labels besides job/instance
    eval_time: str | None = None
    interval: str | None = None


@dataclass(frozen=True)
class Runbook:
    meaning: str
    confirm: tuple[str, ...]
    fix: tuple[str, ...]
    procedures: tuple[str, ...] = ()  # names of the procedure pages the page links to


@dataclass(frozen=True)
class Procedure:
    """A hand-written procedure page, docs/runbooks/<name>.md, that alert pages link to."""

    name: str
    title: str
    summary: str


@dataclass(frozen=True)
class Component:
    key: str  # redis, postgresql, … (also the rule file's name)
    title: str
    alert_prefix: str
    job_key: str
    job: str
    test_instance: str


@dataclass(frozen=True)
class Rule:
    component: str
    index: int
    name: str
    template: str  # the PromQL macro in templates/alerts/expressions/<component>.promql.j2
    severity: str
    for_: str
    summary: str
    description: str
    runbook: Runbook
    firing: AlertTest
    silent: AlertTest
    threshold: float | None = None
    quantile: float | None = None
    window: str | None = None  # a key of `windows`
    selector: str = ""

    @property
    def where(self) -> str:
        return f"rules.{self.component}[{self.index}]"


@dataclass(frozen=True)
class ExternalMetric:
    name: str  # Jinja-templated like test series
    type: str
    help: str
    labels: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class ObservabilityConfig:
    path: Path
    metric_prefix: str
    runbook_base_url: str
    datasource_type: str
    datasource_uid: str
    jobs: Mapping[str, str]
    rpo: str
    windows: Mapping[str, str]
    components: Mapping[str, Component]
    rules: tuple[Rule, ...]
    external_metrics: tuple[ExternalMetric, ...]
    procedures: Mapping[str, Procedure] = field(default_factory=dict)
    profile: str | None = None

    def runbook_url(self, name: str) -> str:
        return f"{self.runbook_base_url}/{name}.md"

    def rules_of(self, component: str) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.component == component)

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


# --- loading ---------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (a silent overwrite hides a mistake)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(path, where, f"malformed YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"malformed YAML: {exc}") from None


class _Checker:
    """Type checks that raise ConfigError naming the field path."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(self.source, where, problem)

    def mapping(
        self, value: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_shown(value)}")
        allowed = required + optional
        for key in value:
            if key not in allowed:
                raise self.fail(
                    _join(where, str(key)), f"unknown key (allowed: {', '.join(allowed)})"
                )
        for key in required:
            if key not in value or value[key] is None:
                raise self.fail(_join(where, key), "required")
        return value

    def text(self, value: Any, where: str, *, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {_shown(value)}")
        if not value.strip():
            raise self.fail(where, "must not be empty")
        if pattern is not None and not pattern.match(value):
            raise self.fail(where, f"malformed value {value!r}")
        return value

    def number(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"expected a number, got {_shown(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            raise self.fail(where, f"expected a finite number, got {value!r}")
        return float(value)

    def duration(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value or not _DURATION.match(value):
            raise self.fail(
                where,
                f"expected a Prometheus duration such as 30s, 5m or 1h30m, got {_shown(value)}",
            )
        return value

    def sequence(self, value: Any, where: str, *, non_empty: bool = True) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {_shown(value)}")
        if non_empty and not value:
            raise self.fail(where, "must not be empty")
        return value

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        items = self.sequence(value, where)
        return tuple(self.text(item, f"{where}[{i}]") for i, item in enumerate(items))

    def string_map(
        self, value: Any, where: str, key_pattern: re.Pattern[str] | None = None
    ) -> dict[str, str]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_shown(value)}")
        result = {}
        for key, item in value.items():
            if not isinstance(key, str) or (key_pattern and not key_pattern.match(key)):
                raise self.fail(_join(where, str(key)), "malformed key")
            result[key] = self.text(item, _join(where, key))
        return result


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _shown(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def load_config(path: Path, profile_path: Path | None = None) -> ObservabilityConfig:
    """Read and validate the data file, then apply a profile's overrides."""
    data = read_yaml(path)
    check = _Checker(path)
    top = check.mapping(
        data,
        "",
        required=(
            "metric_prefix",
            "runbook_base_url",
            "datasource",
            "jobs",
            "rpo",
            "windows",
            "components",
            "rules",
            "external_metrics",
        ),
        optional=("procedures",),
    )
    prefix = check.text(top["metric_prefix"], "metric_prefix", pattern=_METRIC_NAME)
    base_url = check.text(top["runbook_base_url"], "runbook_base_url")
    if not _URL.match(base_url):
        raise check.fail("runbook_base_url", f"expected an http(s) URL, got {base_url!r}")
    base_url = base_url.rstrip("/")
    datasource = check.mapping(top["datasource"], "datasource", required=("type", "uid"))
    ds_type = check.text(datasource["type"], "datasource.type")
    if ds_type != "prometheus":
        raise check.fail("datasource.type", f"expected 'prometheus', got {ds_type!r}")
    ds_uid = check.text(datasource["uid"], "datasource.uid", pattern=re.compile(r"^[\w-]{1,40}$"))
    jobs = check.string_map(top["jobs"], "jobs")
    missing = [job for job in REQUIRED_JOBS if job not in jobs]
    if missing:
        raise check.fail("jobs", f"missing {', '.join(missing)}")
    for key, job in jobs.items():
        if re.search(r"[\s\"'\\]", job):
            raise check.fail(f"jobs.{key}", f"not a usable job name: {job!r}")
    rpo = check.duration(top["rpo"], "rpo")
    if duration_seconds(rpo) <= 0:
        raise check.fail("rpo", "must be longer than 0s")
    windows = _windows(check, top["windows"])
    components = _components(check, top["components"], jobs)
    procedures = _procedures(check, top.get("procedures", {}))
    rules = _rules(check, top["rules"], components, windows, procedures)
    metrics = _external_metrics(check, top["external_metrics"])
    config = ObservabilityConfig(
        path=path,
        metric_prefix=prefix,
        runbook_base_url=base_url,
        datasource_type=ds_type,
        datasource_uid=ds_uid,
        jobs=jobs,
        rpo=rpo,
        windows=windows,
        components=components,
        rules=rules,
        external_metrics=metrics,
        procedures=procedures,
    )
    if profile_path is not None:
        config = apply_profile(config, profile_path)
    return config


def _procedures(check: _Checker, value: Any) -> dict[str, Procedure]:
    if not isinstance(value, dict):
        raise check.fail("procedures", f"expected a mapping, got {_shown(value)}")
    found = {}
    for name, item in value.items():
        where = f"procedures.{name}"
        if not isinstance(name, str) or not _PROCEDURE_NAME.match(name):
            raise check.fail(where, "malformed name (lower-case words joined by '-')")
        entry = check.mapping(item, where, required=("title", "summary"))
        found[name] = Procedure(
            name,
            check.text(entry["title"], f"{where}.title"),
            check.text(entry["summary"], f"{where}.summary"),
        )
    return found


def _windows(check: _Checker, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise check.fail("windows", f"expected a non-empty mapping, got {_shown(value)}")
    windows = {}
    for name, window in value.items():
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise check.fail(f"windows.{name}", "malformed name")
        windows[name] = check.duration(window, f"windows.{name}")
        if duration_seconds(windows[name]) <= 0:
            raise check.fail(f"windows.{name}", "must be longer than 0s")
    return windows


def _components(check: _Checker, value: Any, jobs: Mapping[str, str]) -> dict[str, Component]:
    if not isinstance(value, dict) or not value:
        raise check.fail("components", f"expected a non-empty mapping, got {_shown(value)}")
    components = {}
    prefixes: dict[str, str] = {}
    for key, item in value.items():
        where = f"components.{key}"
        if not isinstance(key, str) or not _IDENTIFIER.match(key):
            raise check.fail(where, "malformed component name (lower case, digits, _)")
        entry = check.mapping(
            item, where, required=("title", "alert_prefix", "job", "test_instance")
        )
        alert_prefix = check.text(
            entry["alert_prefix"], f"{where}.alert_prefix", pattern=_ALERT_NAME
        )
        if alert_prefix in prefixes:
            raise check.fail(
                f"{where}.alert_prefix",
                f"{alert_prefix!r} is also the prefix of components.{prefixes[alert_prefix]}",
            )
        prefixes[alert_prefix] = key
        job_key = check.text(entry["job"], f"{where}.job")
        if job_key not in jobs:
            raise check.fail(f"{where}.job", f"{job_key!r} is not a key of jobs")
        components[key] = Component(
            key=key,
            title=check.text(entry["title"], f"{where}.title"),
            alert_prefix=alert_prefix,
            job_key=job_key,
            job=jobs[job_key],
            test_instance=check.text(entry["test_instance"], f"{where}.test_instance"),
        )
    return components


_RULE_REQUIRED = (
    "name",
    "template",
    "severity",
    "for",
    "summary",
    "description",
    "runbook",
    "tests",
)
_RULE_OPTIONAL = ("threshold", "quantile", "window", "selector")


def _rules(
    check: _Checker,
    value: Any,
    components: Mapping[str, Component],
    windows: Mapping[str, str],
    procedures: Mapping[str, Procedure],
) -> tuple[Rule, ...]:
    if not isinstance(value, dict):
        raise check.fail("rules", f"expected a mapping of component -> list, got {_shown(value)}")
    for component in value:
        if component not in components:
            raise check.fail(
                f"rules.{component}",
                f"unknown component (known: {', '.join(components)})",
            )
    rules: list[Rule] = []
    names: dict[str, str] = {}
    for component in components:
        items = check.sequence(value.get(component), f"rules.{component}")
        for index, item in enumerate(items):
            rule = _rule(check, item, components[component], index, windows, procedures)
            if rule.name in names:
                raise check.fail(
                    f"{rule.where}.name",
                    f"{rule.name!r} collides with {names[rule.name]}.name",
                )
            names[rule.name] = rule.where
            rules.append(rule)
    return tuple(rules)


def _rule(
    check: _Checker,
    item: Any,
    component: Component,
    index: int,
    windows: Mapping[str, str],
    procedures: Mapping[str, Procedure],
) -> Rule:
    where = f"rules.{component.key}[{index}]"
    entry = check.mapping(item, where, required=_RULE_REQUIRED, optional=_RULE_OPTIONAL)
    name = check.text(entry["name"], f"{where}.name")
    if not _ALERT_NAME.match(name):
        raise check.fail(f"{where}.name", f"expected a CamelCase alert name, got {name!r}")
    prefix = component.alert_prefix
    if not name.startswith(prefix) or len(name) == len(prefix) or name[len(prefix)].islower():
        raise check.fail(
            f"{where}.name",
            f"{name!r} must start with the component prefix {prefix!r} "
            f"followed by a capitalised word",
        )
    severity = entry["severity"]
    if severity not in SEVERITIES:
        raise check.fail(
            f"{where}.severity",
            f"unknown severity {_shown(severity)} (expected one of {', '.join(SEVERITIES)})",
        )
    summary = check.text(entry["summary"], f"{where}.summary")
    if "{{" in summary or "$" in summary:
        raise check.fail(f"{where}.summary", "must be a static sentence (no {{ }} templating)")
    description = check.text(entry["description"], f"{where}.description")
    _check_description(check, description, f"{where}.description")
    threshold = quantile = None
    if "threshold" in entry:
        threshold = check.number(entry["threshold"], f"{where}.threshold")
    if "quantile" in entry:
        quantile = check.number(entry["quantile"], f"{where}.quantile")
        if not 0 < quantile < 1:
            raise check.fail(
                f"{where}.quantile", f"expected a number between 0 and 1, got {quantile!r}"
            )
    window = None
    if "window" in entry:
        window = check.text(entry["window"], f"{where}.window")
        if window not in windows:
            raise check.fail(
                f"{where}.window", f"unknown window {window!r} (known: {', '.join(windows)})"
            )
    selector = ""
    if "selector" in entry:
        selector = check.text(entry["selector"], f"{where}.selector").strip()
        if "{" in selector or "}" in selector:
            raise check.fail(f"{where}.selector", "label matchers only, without braces")
    template = check.text(entry["template"], f"{where}.template", pattern=_IDENTIFIER)
    runbook = check.mapping(
        entry["runbook"],
        f"{where}.runbook",
        required=("meaning", "confirm", "fix"),
        optional=("procedures",),
    )
    linked: tuple[str, ...] = ()
    if "procedures" in runbook:
        linked = check.strings(runbook["procedures"], f"{where}.runbook.procedures")
    unknown = [name for name in linked if name not in procedures]
    if unknown:
        raise check.fail(
            f"{where}.runbook.procedures",
            f"unknown procedure {', '.join(unknown)} (known: {', '.join(procedures) or 'none'})",
        )
    tests = check.mapping(entry["tests"], f"{where}.tests", required=("firing", "silent"))
    return Rule(
        component=component.key,
        index=index,
        name=name,
        template=template,
        severity=severity,
        for_=check.duration(entry["for"], f"{where}.for"),
        summary=summary,
        description=description,
        runbook=Runbook(
            meaning=check.text(runbook["meaning"], f"{where}.runbook.meaning"),
            confirm=check.strings(runbook["confirm"], f"{where}.runbook.confirm"),
            fix=check.strings(runbook["fix"], f"{where}.runbook.fix"),
            procedures=linked,
        ),
        firing=_test_case(check, tests["firing"], f"{where}.tests.firing", firing=True),
        silent=_test_case(check, tests["silent"], f"{where}.tests.silent", firing=False),
        threshold=threshold,
        quantile=quantile,
        window=window,
        selector=selector,
    )


def _check_description(check: _Checker, description: str, where: str) -> None:
    uses_value = uses_instance = False
    for match in PROM_TEMPLATE.finditer(description):
        inner = match.group(1)
        if _PROM_VALUE.match(inner):
            uses_value = True
        elif label := PROM_LABEL.match(inner):
            uses_instance = uses_instance or label.group(1) == "instance"
        else:
            raise check.fail(
                where,
                f"unsupported template {match.group(0)!r} (use {{{{ $value }}}}, "
                "{{ $value | humanize… }} or {{ $labels.NAME }})",
            )
    if not uses_value or not uses_instance:
        raise check.fail(where, "must show {{ $value }} and {{ $labels.instance }}")


def _test_case(check: _Checker, value: Any, where: str, *, firing: bool) -> AlertTest:
    optional = ("eval_time", "interval") + (("labels",) if firing else ())
    required = ("series", "value") if firing else ("series",)
    entry = check.mapping(value, where, required=required, optional=optional)
    series = []
    for i, item in enumerate(check.sequence(entry["series"], f"{where}.series")):
        spot = f"{where}.series[{i}]"
        pair = check.mapping(item, spot, required=("series", "values"))
        series.append(
            Series(
                series=check.text(pair["series"], f"{spot}.series"),
                values=check.text(pair["values"], f"{spot}.values"),
            )
        )
    labels = check.string_map(entry.get("labels") or {}, f"{where}.labels", _LABEL_NAME)
    for reserved in ("alertname", "severity", "component", "job", "instance"):
        if reserved in labels:
            raise check.fail(f"{where}.labels.{reserved}", "set by the renderer")
    if firing and isinstance(entry["value"], int | float) and not isinstance(entry["value"], bool):
        raise check.fail(f"{where}.value", "expected a string (quote it: how $value renders)")
    return AlertTest(
        series=tuple(series),
        value=check.text(entry["value"], f"{where}.value") if firing else None,
        labels=labels,
        eval_time=_optional(check.duration, entry, "eval_time", where),
        interval=_optional(check.duration, entry, "interval", where),
    )


def _optional(
    convert: Callable[[Any, str], str], entry: Mapping[str, Any], key: str, where: str
) -> str | None:
    return convert(entry[key], f"{where}.{key}") if key in entry else None


def _external_metrics(check: _Checker, value: Any) -> tuple[ExternalMetric, ...]:
    metrics = []
    seen: dict[str, str] = {}
    for i, item in enumerate(check.sequence(value, "external_metrics")):
        where = f"external_metrics[{i}]"
        entry = check.mapping(
            item, where, required=("name", "type", "help", "source"), optional=("labels",)
        )
        name = check.text(entry["name"], f"{where}.name")
        if name in seen:
            raise check.fail(f"{where}.name", f"{name!r} is already listed at {seen[name]}")
        seen[name] = where
        kind = entry["type"]
        if kind not in METRIC_TYPES:
            raise check.fail(
                f"{where}.type",
                f"unknown type {_shown(kind)} (expected one of {', '.join(METRIC_TYPES)})",
            )
        labels: tuple[str, ...] = ()
        if "labels" in entry:
            labels = check.strings(entry["labels"], f"{where}.labels")
            for j, label in enumerate(labels):
                if not _LABEL_NAME.match(label):
                    raise check.fail(f"{where}.labels[{j}]", f"malformed label name {label!r}")
        metrics.append(
            ExternalMetric(
                name=name,
                type=kind,
                help=check.text(entry["help"], f"{where}.help"),
                labels=labels,
                source=check.text(entry["source"], f"{where}.source"),
            )
        )
    return tuple(metrics)


# --- profiles --------------------------------------------------------------------------


def apply_profile(config: ObservabilityConfig, profile_path: Path) -> ObservabilityConfig:
    """Overrides for a deployment profile (the end-to-end test wants short ``for`` durations).

    Keys: ``description`` (text), ``max_for`` (every rule's ``for`` is capped at this
    duration) and ``rules: {AlertName: {for: …}}`` (one rule's ``for``).
    """
    data = read_yaml(profile_path)
    check = _Checker(profile_path)
    top = check.mapping(data, "", required=(), optional=("description", "max_for", "rules"))
    if "description" in top:
        check.text(top["description"], "description")
    cap = None
    if "max_for" in top:
        cap = duration_seconds(check.duration(top["max_for"], "max_for"))
    per_rule: dict[str, str] = {}
    if "rules" in top:
        overrides = top["rules"]
        if not isinstance(overrides, dict):
            raise check.fail(
                "rules", f"expected a mapping of AlertName -> overrides, got {_shown(overrides)}"
            )
        known = {rule.name for rule in config.rules}
        for name, item in overrides.items():
            if name not in known:
                raise check.fail(
                    f"rules.{name}", f"no rule named {name!r} in {shown_path(config.path)}"
                )
            entry = check.mapping(item, f"rules.{name}", required=(), optional=("for",))
            if "for" in entry:
                per_rule[name] = check.duration(entry["for"], f"rules.{name}.for")
    rules = []
    for rule in config.rules:
        for_ = per_rule.get(rule.name, rule.for_)
        if cap is not None and rule.name not in per_rule and duration_seconds(for_) > cap:
            for_ = top["max_for"]
        rules.append(replace(rule, for_=for_))
    return replace(config, rules=tuple(rules), profile=profile_path.stem)
