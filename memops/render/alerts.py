"""Render Prometheus rule files, their promtool unit tests and the external-metrics list.

Each rule of the data file names a PromQL macro (``template``) in
``templates/alerts/expressions/<component>.promql.j2``; the macro receives the
rule's parameters as ``r`` (``r.sel``, ``r.threshold``, ``r.window``, …). A
parameter the macro needs but the rule lacks, or one the rule sets but the macro
never reads, is an error naming the rule's field.

Templates render YAML text; every rendered file is parsed back and compared
with the structure built here, so a template can never publish something else
than the data says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import yaml

from memops.render.config import (
    PROM_LABEL,
    PROM_TEMPLATE,
    AlertTest,
    ConfigError,
    ObservabilityConfig,
    Rule,
    duration_seconds,
    format_duration,
    shown_path,
)
from memops.render.promql import metric_names
from memops.render.templating import squash, tidy_lines

RULES_TEMPLATE = "alerts/rules.yml.j2"
TESTS_TEMPLATE = "alerts/tests.yml.j2"
EXTERNAL_TEMPLATE = "alerts/external-metrics.yml.j2"
EXPRESSIONS_DIR = "alerts/expressions"
EXTERNAL_METRICS_FILE = "alerts/external-metrics.yml"
TEST_EVALUATION_INTERVAL = "1m"
TEST_SERIES_INTERVAL = "1m"
# memops_health_* come from `invoke health` through node_exporter's textfile collector and are
# scraped live; other memops_* and prefixed metrics must be listed in external_metrics.
# Published live through node_exporter's textfile collector by memops itself: `invoke
# health` (memops_health_*), the backup tasks and the restore drill.
LIVE_TEXTFILE_PREFIXES = ("memops_health_", "memops_backup_", "memops_restore_drill_")

_SERIES = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})?$")
_LABEL_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


class _Missing(Exception):
    """A macro read a parameter the rule does not set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class RuleParams:
    """What a template sees as ``r``; records which parameters it reads."""

    def __init__(self, config: ObservabilityConfig, rule: Rule) -> None:
        component = config.components[rule.component]
        matchers = [f'job="{component.job}"'] + ([rule.selector] if rule.selector else [])
        window = config.windows[rule.window] if rule.window else None
        self._values: dict[str, Any] = {
            "name": rule.name,
            "severity": rule.severity,
            "for": rule.for_,
            "job": component.job,
            "sel": ",".join(matchers),
            "threshold": rule.threshold,
            "quantile": rule.quantile,
            "window": window,
            "range": f"[{window}]" if window else None,  # r.window as a range selector
            "rpo": config.rpo,
            "rpo_seconds": duration_seconds(config.rpo),
            "prefix": config.metric_prefix,
        }
        self.read: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._values or self._values[name] is None:
            raise _Missing("window" if name == "range" else name)
        self.read.add("window" if name == "range" else name)
        return self._values[name]

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)


# Parameters a rule may set; each must be read by its expression macro.
_OPTIONAL_PARAMS = ("threshold", "quantile", "window", "selector")


@dataclass(frozen=True)
class RenderedRule:
    rule: Rule
    expr: str
    summary: str
    description: str
    runbook_url: str
    labels: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "alert": self.rule.name,
            "expr": self.expr,
            "for": self.rule.for_,
            "labels": dict(self.labels),
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": self.runbook_url,
            },
        }


def text_context(config: ObservabilityConfig, rule: Rule) -> dict[str, Any]:
    """Names available to the data file's strings (summary, description, runbook, series)."""
    return {
        "r": RuleParams(config, rule),
        "prefix": config.metric_prefix,
        "jobs": dict(config.jobs),
        "rpo": config.rpo,
        "component": config.components[rule.component],
    }


def render_text(
    env: jinja2.Environment, config: ObservabilityConfig, rule: Rule, text: str, where: str
) -> str:
    try:
        return squash(env.from_string(text).render(text_context(config, rule)))
    except _Missing as exc:
        raise ConfigError(
            config.path, where, f"uses r.{exc.name}, which the rule does not set"
        ) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(config.path, where, f"template error: {exc}") from None


def render_rule(env: jinja2.Environment, config: ObservabilityConfig, rule: Rule) -> RenderedRule:
    macro_file = f"{EXPRESSIONS_DIR}/{rule.component}.promql.j2"
    try:
        module = env.get_template(macro_file).module
    except jinja2.TemplateNotFound:
        raise ConfigError(
            config.path, f"{rule.where}.template", f"no expression file templates/{macro_file}"
        ) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(config.path, "", f"templates/{macro_file}: {exc}") from None
    macro = getattr(module, rule.template, None)
    if not isinstance(macro, jinja2.runtime.Macro):
        known = sorted(n for n in dir(module) if not n.startswith("_"))
        raise ConfigError(
            config.path,
            f"{rule.where}.template",
            f"unknown expression {rule.template!r} "
            f"(templates/{macro_file} has: {', '.join(known)})",
        )
    params = RuleParams(config, rule)
    try:
        expr = tidy_lines(macro(params))
    except _Missing as exc:
        raise ConfigError(
            config.path,
            f"{rule.where}.{exc.name}",
            f"required by expression {rule.template!r}",
        ) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(config.path, f"{rule.where}.template", f"{exc}") from None
    for name in _OPTIONAL_PARAMS:
        read = "sel" if name == "selector" else name
        if getattr(rule, name) not in (None, "") and read not in params.read:
            raise ConfigError(
                config.path, f"{rule.where}.{name}", f"not used by expression {rule.template!r}"
            )
    if not expr:
        raise ConfigError(config.path, f"{rule.where}.template", "renders an empty expression")
    return RenderedRule(
        rule=rule,
        expr=expr,
        summary=render_text(env, config, rule, rule.summary, f"{rule.where}.summary"),
        description=render_text(env, config, rule, rule.description, f"{rule.where}.description"),
        runbook_url=config.runbook_url(rule.name),
        labels={"severity": rule.severity, "component": rule.component},
    )


def render_rules(env: jinja2.Environment, config: ObservabilityConfig) -> list[RenderedRule]:
    return [render_rule(env, config, rule) for rule in config.rules]


# --- rendered files --------------------------------------------------------------------


def header(config: ObservabilityConfig) -> list[str]:
    """The generated-file notice (the first line carries driver.GENERATED_MARKER)."""
    profile = f" with profile {config.profile}" if config.profile else ""
    return [
        f"Rendered by `invoke render` from {shown_path(config.path)}{profile}:",
        "edit the data or the templates, not this file.",
    ]


def render_alert_files(
    env: jinja2.Environment, config: ObservabilityConfig, rendered: list[RenderedRule]
) -> dict[str, str]:
    check_external_metrics(env, config, rendered)
    files: dict[str, str] = {}
    for component in config.components.values():
        mine = [item for item in rendered if item.rule.component == component.key]
        if not mine:
            continue
        group = {"name": f"memops-{component.key}", "rules": [r.as_dict() for r in mine]}
        text = _render_file(
            env,
            RULES_TEMPLATE,
            {"header": header(config), "group": group, "title": component.title},
        )
        _verify(text, {"groups": [group]}, f"alerts/{component.key}.rules.yml")
        files[f"alerts/{component.key}.rules.yml"] = text
        document = promtool_tests(env, config, component.key, mine)
        text = _render_file(env, TESTS_TEMPLATE, {"header": header(config), "doc": document})
        _verify(text, document, f"alerts/tests/{component.key}.test.yml")
        files[f"alerts/tests/{component.key}.test.yml"] = text
    files[EXTERNAL_METRICS_FILE] = render_external_metrics(env, config, rendered)
    return files


def _render_file(env: jinja2.Environment, template: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(template).render(context)
    except jinja2.TemplateNotFound:
        raise ConfigError(f"templates/{template}", "", "template not found") from None
    except jinja2.TemplateError as exc:
        raise ConfigError(f"templates/{template}", "", f"template error: {exc}") from None


def _verify(text: str, expected: Any, name: str) -> None:
    """The rendered text must parse back to exactly the structure it was rendered from."""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(name, "", f"templates produced malformed YAML: {exc}") from None
    if parsed != expected:
        raise ConfigError(name, "", "templates produced YAML that does not match the data")


# --- promtool tests --------------------------------------------------------------------


def promtool_tests(
    env: jinja2.Environment,
    config: ObservabilityConfig,
    component_key: str,
    rendered: list[RenderedRule],
) -> dict[str, Any]:
    tests = []
    for item in rendered:
        tests.append(_test_case(env, config, item, item.rule.firing, firing=True))
        tests.append(_test_case(env, config, item, item.rule.silent, firing=False))
    return {
        "rule_files": [f"../{component_key}.rules.yml"],
        "evaluation_interval": TEST_EVALUATION_INTERVAL,
        "tests": tests,
    }


def _test_case(
    env: jinja2.Environment,
    config: ObservabilityConfig,
    item: RenderedRule,
    case: AlertTest,
    *,
    firing: bool,
) -> dict[str, Any]:
    rule = item.rule
    component = config.components[rule.component]
    where = f"{rule.where}.tests.{'firing' if firing else 'silent'}"
    input_series = []
    for i, series in enumerate(case.series):
        spot = f"{where}.series[{i}]"
        text = render_text(env, config, rule, series.series, f"{spot}.series")
        input_series.append(
            {
                "series": _with_target_labels(
                    config, text, component.job, component.test_instance, spot
                ),
                "values": series.values,
            }
        )
    eval_time = case.eval_time or default_eval_time(config, rule)
    expected: list[dict[str, Any]] = []
    if firing:
        labels = {
            **dict(case.labels),
            **item.labels,
            "job": component.job,
            "instance": component.test_instance,
        }
        expected.append(
            {
                "exp_labels": labels,
                "exp_annotations": {
                    "summary": item.summary,
                    "description": expand_description(config, item, case, labels, where),
                    "runbook_url": item.runbook_url,
                },
            }
        )
    return {
        "name": f"{rule.name} {'fires' if firing else 'stays silent'}",
        "interval": case.interval or TEST_SERIES_INTERVAL,
        "input_series": input_series,
        "alert_rule_test": [
            {"eval_time": eval_time, "alertname": rule.name, "exp_alerts": expected}
        ],
    }


def default_eval_time(config: ObservabilityConfig, rule: Rule) -> str:
    """Late enough for the window to fill and the ``for`` to pass, with 10 minutes to spare."""
    window = duration_seconds(config.windows[rule.window]) if rule.window else 0
    seconds = duration_seconds(rule.for_) + window + 600
    return format_duration(-(-seconds // 60) * 60)


def expand_description(
    config: ObservabilityConfig,
    item: RenderedRule,
    case: AlertTest,
    labels: Mapping[str, str],
    where: str,
) -> str:
    """The description as Prometheus renders it for the firing test case."""

    def expand(match: re.Match[str]) -> str:
        inner = match.group(1)
        label = PROM_LABEL.match(inner)
        if label is None:
            return case.value or ""
        if label.group(1) not in labels:
            raise ConfigError(
                config.path,
                f"{where}.labels",
                f"the description shows $labels.{label.group(1)}; give its expected value here",
            )
        return labels[label.group(1)]

    return PROM_TEMPLATE.sub(expand, item.description)


def _with_target_labels(
    config: ObservabilityConfig, text: str, job: str, instance: str, where: str
) -> str:
    """``name{a="b"}`` with ``job`` and ``instance`` first, as a scrape would attach them."""
    match = _SERIES.match(text.strip())
    if match is None:
        raise ConfigError(config.path, f"{where}.series", f"malformed series {text!r}")
    pairs = _parse_labels(config, match.group("labels") or "", f"{where}.series")
    given = dict(pairs)
    ordered = [("job", given.pop("job", job)), ("instance", given.pop("instance", instance))]
    ordered += [(key, value) for key, value in pairs if key in given]
    inner = ",".join(f'{key}="{value}"' for key, value in ordered)
    return f"{match.group('name')}{{{inner}}}"


def _parse_labels(config: ObservabilityConfig, text: str, where: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    position = 0
    while position < len(text.strip()):
        match = _LABEL_PAIR.match(text, position)
        if match is None:
            raise ConfigError(config.path, where, f"malformed labels {{{text}}}")
        pairs.append((match.group(1), match.group(2)))
        position = match.end()
    return pairs


# --- external metrics ------------------------------------------------------------------


def _base_name(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def external_metric_names(env: jinja2.Environment, config: ObservabilityConfig) -> dict[str, int]:
    """Rendered name -> index in external_metrics."""
    names = {}
    for index, metric in enumerate(config.external_metrics):
        try:
            rendered = squash(env.from_string(metric.name).render(prefix=config.metric_prefix))
        except jinja2.TemplateError as exc:
            raise ConfigError(
                config.path, f"external_metrics[{index}].name", f"template error: {exc}"
            ) from None
        if not re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", rendered):
            raise ConfigError(
                config.path,
                f"external_metrics[{index}].name",
                f"malformed metric name {rendered!r}",
            )
        names[rendered] = index
    return names


def needs_listing(config: ObservabilityConfig, name: str) -> bool:
    """Metrics only the memory service or memops batch jobs export must be documented."""
    if name.startswith(LIVE_TEXTFILE_PREFIXES):
        return False
    return name.startswith((config.metric_prefix, "memops_"))


def check_external_metrics(
    env: jinja2.Environment, config: ObservabilityConfig, rendered: list[RenderedRule]
) -> None:
    listed = external_metric_names(env, config)
    for item in rendered:
        for name in sorted(metric_names(item.expr)):
            if (
                needs_listing(config, name)
                and name not in listed
                and _base_name(name) not in listed
            ):
                raise ConfigError(
                    config.path,
                    f"{item.rule.where}.template",
                    f"the expression uses {name}, which external_metrics does not list",
                )


def render_external_metrics(
    env: jinja2.Environment, config: ObservabilityConfig, rendered: list[RenderedRule]
) -> str:
    names = external_metric_names(env, config)
    users: dict[str, list[str]] = {name: [] for name in names}
    for item in rendered:
        for name in metric_names(item.expr):
            for candidate in (name, _base_name(name)):
                if candidate in users and item.rule.name not in users[candidate]:
                    users[candidate].append(item.rule.name)
    metrics = []
    for name, index in names.items():
        metric = config.external_metrics[index]
        metrics.append(
            {
                "name": name,
                "type": metric.type,
                "help": squash(metric.help),
                "labels": list(metric.labels),
                "source": squash(metric.source),
                "alerts": users[name],
            }
        )
    document = {"metrics": metrics}
    text = _render_file(
        env,
        EXTERNAL_TEMPLATE,
        {"header": header(config), "metrics": metrics, "prefix": config.metric_prefix},
    )
    _verify(text, document, EXTERNAL_METRICS_FILE)
    return text
