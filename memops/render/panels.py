"""Grafana JSON building blocks: dashboards, template variables, stat and timeseries panels.

Only what the memops dashboards need (Grafana dashboard schema 39). Panel
specs come from the YAML that templates/dashboards/*.yml.j2 render to; every
key of a spec is checked here so a typo in a template fails the render instead
of silently producing a panel without, say, a unit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from memops.errors import Refused

SCHEMA_VERSION = 39
GRID_WIDTH = 24
DATASOURCE_VARIABLE = "datasource"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = ("stat", "timeseries")
DEFAULT_HEIGHT = {"stat": 4, "timeseries": 8}

# Value mappings and colours of stat panels that show a state rather than a quantity.
_GREEN, _ORANGE, _RED, _BLUE = "green", "orange", "red", "blue"
STYLES: dict[str, dict[str, Any]] = {
    # 1 = up (redis_up, pg_up, up, memops_health_component_up)
    "up": {"map": {0: ("DOWN", _RED), 1: ("UP", _GREEN)}, "steps": [(_RED, None), (_GREEN, 1)]},
    # 1 = the last run succeeded
    "ok": {"map": {0: ("FAILED", _RED), 1: ("OK", _GREEN)}, "steps": [(_RED, None), (_GREEN, 1)]},
    # 1 = an error (exporter scrape error, textfile collector error)
    "error": {
        "map": {0: ("OK", _GREEN), 1: ("ERROR", _RED)},
        "steps": [(_GREEN, None), (_RED, 1)],
    },
    # 1 = a mode that needs attention is on (Qdrant recovery mode)
    "flag": {
        "map": {0: ("OFF", _GREEN), 1: ("ON", _ORANGE)},
        "steps": [(_GREEN, None), (_ORANGE, 1)],
    },
    # memops whole-stack state code: 0 healthy, 1 degraded, 2 failing
    "state": {
        "map": {0: ("HEALTHY", _GREEN), 1: ("DEGRADED", _ORANGE), 2: ("FAILING", _RED)},
        "steps": [(_GREEN, None), (_ORANGE, 1), (_RED, 2)],
    },
    # plain numbers, no colour judgement
    "info": {"map": {}, "steps": [(_BLUE, None)]},
    # 1 = the primary (leader) of a replicated tier, 0 = a replica
    "role": {
        "map": {0: ("REPLICA", _BLUE), 1: ("PRIMARY", _GREEN)},
        "steps": [(_BLUE, None), (_GREEN, 1)],
    },
}

_PANEL_KEYS = {"title", "description", "type", "unit", "targets", "w", "h"} | {
    "style",
    "min",
    "max",
    "decimals",
    "steps",
    "text_mode",
    "stack",
}
_TARGET_KEYS = {"expr", "legend", "instant"}
_LEGEND_LABEL = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SpecError(Refused, ValueError):
    """A dashboard template rendered to something that is not a valid dashboard spec."""


def legend_format(legend: str) -> str:
    """Template legends write labels as ``{label}``; Grafana wants ``{{label}}``."""
    return _LEGEND_LABEL.sub(r"{{\1}}", legend)


def datasource_variable(default_uid: str) -> dict[str, Any]:
    return {
        "current": {"selected": False, "text": default_uid, "value": default_uid},
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": DATASOURCE_VARIABLE,
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
        "type": "datasource",
    }


def query_variable(
    name: str, query: str, *, default: Sequence[str] = (), regex: str = ""
) -> dict[str, Any]:
    """A multi-select ``label_values`` variable with an All option matching ``.+``."""
    if default:
        current = {"selected": True, "text": list(default), "value": list(default)}
    else:
        current = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return {
        "allValue": ".+",
        "current": current,
        "datasource": dict(DATASOURCE_REF),
        "definition": query,
        "hide": 0,
        "includeAll": True,
        "label": name.capitalize(),
        "multi": True,
        "name": name,
        "options": [],
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,
        "regex": regex,
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }


def panel(spec: Mapping[str, Any], panel_id: int, x: int, y: int) -> dict[str, Any]:
    """One panel from its spec, at grid position (x, y)."""
    where = f"panel {spec.get('title', panel_id)!r}"
    unknown = set(spec) - _PANEL_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("title", "description", "type", "unit", "targets", "w"):
        if key not in spec:
            raise SpecError(f"{where}: missing {key!r}")
    kind = spec["type"]
    if kind not in PANEL_TYPES:
        raise SpecError(f"{where}: type must be one of {PANEL_TYPES}, not {kind!r}")
    if not isinstance(spec["unit"], str) or not spec["unit"]:
        raise SpecError(f"{where}: unit must be a non-empty string")
    width, height = spec["w"], spec.get("h", DEFAULT_HEIGHT[kind])
    if not (isinstance(width, int) and 1 <= width <= GRID_WIDTH and isinstance(height, int)):
        raise SpecError(f"{where}: w must be 1..{GRID_WIDTH} and h an integer")
    if not spec["targets"]:
        raise SpecError(f"{where}: no targets")
    defaults: dict[str, Any] = {"unit": spec["unit"]}
    for key in ("min", "max", "decimals"):
        if key in spec:
            defaults[key] = spec[key]
    built = {
        "datasource": dict(DATASOURCE_REF),
        "description": spec["description"].strip(),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "gridPos": {"h": height, "w": width, "x": x, "y": y},
        "id": panel_id,
        "targets": [_target(t, index, where) for index, t in enumerate(spec["targets"])],
        "title": spec["title"],
        "type": kind,
    }
    if kind == "stat":
        _stat(built, spec, where)
    else:
        _timeseries(built, spec, where)
    return built


def dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    tags: Sequence[str],
    variables: Sequence[Mapping[str, Any]],
    panels: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description.strip(),
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "tags": ["memops"],
                "targetBlank": False,
                "title": "memops dashboards",
                "type": "dashboards",
            }
        ],
        "panels": list(panels),
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": sorted({"memops", *tags}),
        "templating": {"list": list(variables)},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def _target(spec: Mapping[str, Any], index: int, where: str) -> dict[str, Any]:
    unknown = set(spec) - _TARGET_KEYS
    if unknown or "expr" not in spec:
        raise SpecError(f"{where}: target {index} needs expr (unknown keys {sorted(unknown)})")
    instant = bool(spec.get("instant", False))
    return {
        "datasource": dict(DATASOURCE_REF),
        "editorMode": "code",
        "expr": " ".join(spec["expr"].split()),
        "instant": instant,
        "legendFormat": legend_format(spec.get("legend", "__auto")),
        "range": not instant,
        "refId": chr(ord("A") + index),
    }


def _steps(pairs: Sequence[Sequence[Any]]) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for color, value in pairs],
    }


def _stat(built: dict[str, Any], spec: Mapping[str, Any], where: str) -> None:
    style_name = spec.get("style", "info")
    if style_name not in STYLES:
        raise SpecError(f"{where}: style must be one of {sorted(STYLES)}, not {style_name!r}")
    if "stack" in spec:
        raise SpecError(f"{where}: stack is for timeseries panels")
    style = STYLES[style_name]
    defaults = built["fieldConfig"]["defaults"]
    defaults["color"] = {"mode": "thresholds"}
    defaults["mappings"] = (
        [
            {
                "options": {
                    str(value): {"color": color, "index": index, "text": text}
                    for index, (value, (text, color)) in enumerate(sorted(style["map"].items()))
                },
                "type": "value",
            }
        ]
        if style["map"]
        else []
    )
    defaults["thresholds"] = _steps(spec.get("steps", style["steps"]))
    built["options"] = {
        "colorMode": "background" if style["map"] else "value",
        "graphMode": "none" if style["map"] else "area",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showPercentChange": False,
        "textMode": spec.get("text_mode", "auto"),
        "wideLayout": True,
    }


def _timeseries(built: dict[str, Any], spec: Mapping[str, Any], where: str) -> None:
    if "style" in spec or "text_mode" in spec:
        raise SpecError(f"{where}: style and text_mode are for stat panels")
    defaults = built["fieldConfig"]["defaults"]
    defaults["color"] = {"mode": "palette-classic"}
    defaults["custom"] = {
        "axisBorderShow": False,
        "axisPlacement": "auto",
        "drawStyle": "line",
        "fillOpacity": 10,
        "gradientMode": "none",
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "pointSize": 4,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if spec.get("stack") else "none"},
    }
    defaults["thresholds"] = _steps(spec.get("steps", [(_GREEN, None)]))
    built["options"] = {
        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
