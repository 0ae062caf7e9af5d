"""Render the Grafana dashboards and their file provisioning.

Sources: ``templates/dashboards/<name>.yml.j2``. Each is a Jinja2 template of a
small YAML dashboard spec (uid, title, job/instance variable queries, rows of
panels with their PromQL); Jinja2 fills in the memory-service metric prefix and
the Prometheus job names, and :mod:`memops.render.panels` turns the spec into
Grafana JSON (schema 39): the datasource variable, the ``job`` and ``instance``
variables, panel ids in reading order, grid positions row by row.

Template conventions (documented in templates/dashboards/README.md):

* ``{{ prefix }}`` is the memory-service metric prefix (``martha_``),
  ``{{ jobs.redis }}`` … ``{{ jobs['memory-service'] }}`` the job names;
* ``{{ s('metric') }}`` writes ``metric{job=~"$job",instance=~"$instance"}``
  and ``{{ s('metric', 'status=~"5.."') }}`` adds matchers, so every query
  filters on the dashboard's variables;
* a legend names labels as ``{label}`` (Grafana's ``{{label}}`` would collide
  with Jinja2).

Every rendered dashboard goes through :func:`memops.render.dashboard_lint.lint`
before it is returned, so a template that breaks a lint rule fails the render.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml

from memops.errors import Refused
from memops.paths import TEMPLATES_DIR as PROJECT_TEMPLATES_DIR
from memops.render import dashboard_lint, panels
from memops.render.config import REQUIRED_JOBS

TEMPLATES_DIR = PROJECT_TEMPLATES_DIR / "dashboards"

# Output file (under dashboards/) -> template (under templates/dashboards/) and its uid.
# The uids are part of the interface: links, bookmarks and alert annotations use them.
DASHBOARDS: dict[str, tuple[str, str]] = {
    "memory-overview.json": ("memory-overview.yml.j2", "memops-memory-overview"),
    "redis.json": ("redis.yml.j2", "memops-redis"),
    "postgresql.json": ("postgresql.yml.j2", "memops-postgresql"),
    "qdrant.json": ("qdrant.yml.j2", "memops-qdrant"),
    "supersede-lifecycle.json": ("supersede-lifecycle.yml.j2", "memops-supersede-lifecycle"),
    "backups-drills.json": ("backups-drills.yml.j2", "memops-backups-drills"),
    "replication.json": ("replication.yml.j2", "memops-replication"),
}
DATASOURCES_FILE = "provisioning/datasources/memops.yml"
PROVIDERS_FILE = "provisioning/dashboards/memops.yml"
# Where the grafana role installs dashboards/*.json on the Grafana host.
GRAFANA_DASHBOARDS_PATH = "/var/lib/grafana/dashboards/memops"
# Defaults of the provisioned Prometheus data source; the grafana role sets the real URL.
DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
DEFAULT_SCRAPE_INTERVAL = "15s"

_METRIC_PREFIX = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_UID = re.compile(r"[A-Za-z0-9_-]{1,40}")
_JOB = re.compile(r"[^\s\"'\\]+")
_SPEC_KEYS = {"uid", "title", "description", "tags", "job", "instance", "rows"}


class DashboardError(Refused, ValueError):
    """Bad input to the render, or a template that renders an invalid dashboard."""


def render_dashboards(
    metric_prefix: str,
    datasource_uid: str,
    jobs: Mapping[str, str],
    *,
    prometheus_url: str = DEFAULT_PROMETHEUS_URL,
    scrape_interval: str = DEFAULT_SCRAPE_INTERVAL,
    templates_dir: Path | None = None,
) -> dict[str, str]:
    """Every file under dashboards/ (relative name -> text), deterministic, newline-terminated.

    ``prometheus_url`` and ``scrape_interval`` only go into the datasource
    provisioning file (the grafana role overrides the URL per inventory).
    Raises DashboardError when an argument is invalid or a dashboard fails lint.
    """
    _check_arguments(metric_prefix, datasource_uid, jobs)
    environment = _environment(templates_dir or TEMPLATES_DIR)
    context = {"prefix": metric_prefix, "jobs": dict(jobs)}
    files: dict[str, str] = {}
    for name, (template_name, uid) in DASHBOARDS.items():
        built = build_dashboard(environment, template_name, context, datasource_uid)
        if built["uid"] != uid:
            raise DashboardError(f"{template_name}: uid {built['uid']!r} must stay {uid!r}")
        problems = dashboard_lint.lint(built)
        if problems:
            raise DashboardError(f"{template_name}: " + "; ".join(problems))
        files[name] = to_json(built)
    files[DATASOURCES_FILE] = _datasources_yaml(datasource_uid, prometheus_url, scrape_interval)
    files[PROVIDERS_FILE] = _providers_yaml()
    return dict(sorted(files.items()))


def build_dashboard(
    environment: jinja2.Environment,
    template_name: str,
    context: Mapping[str, Any],
    datasource_uid: str,
) -> dict[str, Any]:
    """Render one template and build its dashboard JSON object."""
    try:
        text = environment.get_template(template_name).render(**context)
    except jinja2.TemplateError as exc:
        raise DashboardError(f"{template_name}: {exc}") from exc
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DashboardError(f"{template_name}: rendered YAML is invalid: {exc}") from exc
    if not isinstance(spec, dict) or set(spec) != _SPEC_KEYS:
        keys = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        raise DashboardError(f"{template_name}: spec keys must be {sorted(_SPEC_KEYS)}: {keys}")
    try:
        return _build(spec, datasource_uid)
    except (panels.SpecError, KeyError, TypeError) as exc:
        raise DashboardError(f"{template_name}: {exc}") from exc


def to_json(dashboard: Mapping[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


def selector(metric: str, extra: str = "") -> str:
    """``metric{job=~"$job",instance=~"$instance"[,extra]}`` — the ``s()`` of the templates."""
    matchers = 'job=~"$job",instance=~"$instance"'
    return f"{metric}{{{matchers}{',' + extra if extra else ''}}}"


def regex_alternation(values: Any) -> str:
    """``a|b|c`` with regex metacharacters escaped (for a Grafana variable regex)."""
    if isinstance(values, str):
        values = [values]
    return "|".join(re.sub(r"([.^$*+?()\[\]{}|\\/])", r"\\\1", v) for v in sorted(set(values)))


def _environment(templates_dir: Path) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    environment.globals["s"] = selector
    environment.filters["re_alt"] = regex_alternation
    return environment


def _build(spec: Mapping[str, Any], datasource_uid: str) -> dict[str, Any]:
    job, instance = spec["job"], spec["instance"]
    variables = [
        panels.datasource_variable(datasource_uid),
        panels.query_variable(
            "job", job["query"], default=job.get("default", []), regex=job.get("regex", "")
        ),
        panels.query_variable("instance", instance["query"]),
    ]
    built: list[dict[str, Any]] = []
    y = 0
    for row_index, row in enumerate(spec["rows"]):
        x, height = 0, 0
        for panel_spec in row["panels"]:
            item = panels.panel(panel_spec, len(built) + 1, x, y)
            x += item["gridPos"]["w"]
            height = max(height, item["gridPos"]["h"])
            built.append(item)
        if x > panels.GRID_WIDTH:
            raise panels.SpecError(f"row {row_index + 1} is {x} wide (max {panels.GRID_WIDTH})")
        y += height
    return panels.dashboard(
        uid=spec["uid"],
        title=spec["title"],
        description=spec["description"],
        tags=spec["tags"],
        variables=variables,
        panels=built,
    )


def _check_arguments(metric_prefix: str, datasource_uid: str, jobs: Mapping[str, str]) -> None:
    if not isinstance(metric_prefix, str) or not _METRIC_PREFIX.fullmatch(metric_prefix):
        raise DashboardError(
            f"metric_prefix: not a Prometheus metric name prefix: {metric_prefix!r}"
        )
    if not isinstance(datasource_uid, str) or not _UID.fullmatch(datasource_uid):
        raise DashboardError(
            f"datasource uid: 1-40 characters of letters, digits, '-' and '_': {datasource_uid!r}"
        )
    missing = [name for name in REQUIRED_JOBS if name not in jobs]
    if missing:
        raise DashboardError(f"jobs: missing {', '.join(missing)}")
    for name, value in jobs.items():
        if not isinstance(value, str) or not _JOB.fullmatch(value):
            raise DashboardError(f"jobs.{name}: not a usable job name: {value!r}")


def _datasources_yaml(datasource_uid: str, url: str, scrape_interval: str) -> str:
    for field, value in (("prometheus_url", url), ("scrape_interval", scrape_interval)):
        if not isinstance(value, str) or not re.fullmatch(r"[^\s\"'#]+", value):
            raise DashboardError(f"{field}: not usable in the provisioning file: {value!r}")
    return f"""---
# Rendered by `invoke render` (memops/render/dashboards.py); do not edit.
# Grafana file provisioning of the Prometheus data source the memops dashboards
# use: their ${{datasource}} variable defaults to uid "{datasource_uid}".
# The url is the default for a Grafana next to Prometheus; the grafana role
# replaces it with its own setting when it installs this file.
apiVersion: 1
datasources:
  - name: memops Prometheus
    type: prometheus
    uid: {datasource_uid}
    access: proxy
    url: {url}
    isDefault: true
    editable: false
    jsonData:
      httpMethod: POST
      timeInterval: {scrape_interval}
"""


def _providers_yaml() -> str:
    return f"""---
# Rendered by `invoke render` (memops/render/dashboards.py); do not edit.
# Grafana file provisioning: load the memops dashboards (dashboards/*.json, installed
# by the grafana role into {GRAFANA_DASHBOARDS_PATH}) into the "memops" folder.
apiVersion: 1
providers:
  - name: memops
    orgId: 1
    folder: memops
    folderUid: memops
    type: file
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: {GRAFANA_DASHBOARDS_PATH}
      foldersFromFilesStructure: false
"""
