"""Render docs/runbooks/<AlertName>.md (the target of every alert's runbook_url) and an index."""

from __future__ import annotations

import jinja2

from memops.render.alerts import RenderedRule, _render_file, header, render_text
from memops.render.config import ObservabilityConfig, shown_path

RUNBOOK_TEMPLATE = "alerts/runbook.md.j2"
INDEX_TEMPLATE = "alerts/runbooks-index.md.j2"
RUNBOOK_DIR = "docs/runbooks"


def runbook_path(name: str) -> str:
    return f"{RUNBOOK_DIR}/{name}.md"


def render_runbooks(
    env: jinja2.Environment, config: ObservabilityConfig, rendered: list[RenderedRule]
) -> dict[str, str]:
    files: dict[str, str] = {}
    pages = []
    for item in rendered:
        rule = item.rule
        where = f"{rule.where}.runbook"
        context = {
            "header": header(config),
            "source": shown_path(config.path),
            "rule": rule,
            "component": config.components[rule.component],
            "summary": item.summary,
            "description": item.description,
            "expr": item.expr,
            "meaning": render_text(env, config, rule, rule.runbook.meaning, f"{where}.meaning"),
            "confirm": [
                render_text(env, config, rule, step, f"{where}.confirm[{i}]")
                for i, step in enumerate(rule.runbook.confirm)
            ],
            "fix": [
                render_text(env, config, rule, step, f"{where}.fix[{i}]")
                for i, step in enumerate(rule.runbook.fix)
            ],
            "procedures": [config.procedures[name] for name in rule.runbook.procedures],
        }
        files[runbook_path(rule.name)] = _render_file(env, RUNBOOK_TEMPLATE, context)
        pages.append(
            {
                "name": rule.name,
                "severity": rule.severity,
                "component": config.components[rule.component].title,
                "summary": item.summary,
            }
        )
    files[f"{RUNBOOK_DIR}/README.md"] = _render_file(
        env,
        INDEX_TEMPLATE,
        {
            "header": header(config),
            "source": shown_path(config.path),
            "pages": pages,
            "procedures": list(config.procedures.values()),
        },
    )
    return files
