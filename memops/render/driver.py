"""Render every observability file, then write it or check it against the files on disk.

:func:`render_all` validates the data and renders everything in memory first, so
bad input never leaves half a render behind; :func:`write_outputs` then replaces
each changed file atomically (temporary file + rename) and removes generated
files the data no longer produces; :func:`check_outputs` reports what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from memops.errors import Refused
from memops.files import PUBLIC, write_atomic
from memops.render import alerts, runbooks
from memops.render.config import ConfigError, load_config
from memops.render.templating import environment

GENERATED_MARKER = "Rendered by `invoke render`"
DASHBOARDS_DIR = "dashboards"


class RenderError(Refused, ValueError):
    """Bad input (data file, profile, templates): one line naming the file and field."""


def profile_path(config_path: Path, profile: str) -> Path:
    path = config_path.parent / "profiles" / f"{profile}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_path.parent / "profiles").glob("*.yml"))
        raise RenderError(
            f"profile {profile!r} not found: no {path} (known: {', '.join(known) or 'none'})"
        )
    return path


def render_all(config_path: Path, out_dir: Path, profile: str | None = None) -> dict[str, str]:
    """Every rendered file: path relative to ``out_dir`` -> text. Raises RenderError.

    ``out_dir`` is where the files are meant to go; the names are relative to it and the
    promtool tests find their rule files by relative path, so any directory works.
    """
    del out_dir  # the layout below out_dir is the same wherever it is
    try:
        config = load_config(config_path, profile_path(config_path, profile) if profile else None)
        env = environment(config_path.parent)
        rendered = alerts.render_rules(env, config)
        outputs = alerts.render_alert_files(env, config, rendered)
        outputs.update(runbooks.render_runbooks(env, config, rendered))
    except ConfigError as exc:
        raise RenderError(str(exc)) from None
    outputs.update(_dashboards(config.metric_prefix, config.datasource_uid, dict(config.jobs)))
    return dict(sorted(outputs.items()))


def _dashboards(prefix: str, datasource_uid: str, jobs: dict[str, str]) -> dict[str, str]:
    from memops.render.dashboards import DashboardError, render_dashboards

    try:
        files = render_dashboards(prefix, datasource_uid, jobs)
    except DashboardError as exc:
        raise RenderError(f"dashboards: {exc}") from None
    return {f"{DASHBOARDS_DIR}/{name}": text for name, text in files.items()}


def generated_files(out_dir: Path) -> set[str]:
    """Files under ``out_dir`` that a previous render wrote (relative paths)."""
    found: set[str] = set()
    patterns = (
        "alerts/*.rules.yml",
        "alerts/tests/*.test.yml",
        "alerts/external-metrics.yml",
        "docs/runbooks/*.md",
        "dashboards/provisioning/*/*.yml",
    )
    for pattern in patterns:
        for path in out_dir.glob(pattern):
            if path.is_file() and _is_generated(path):
                found.add(path.relative_to(out_dir).as_posix())
    found.update(
        path.relative_to(out_dir).as_posix()
        for path in out_dir.glob(f"{DASHBOARDS_DIR}/*.json")
        if path.is_file()
    )
    return found


def _is_generated(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            head = handle.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    # dashboards' provisioning files are the dashboards helper's: all files there are generated
    return GENERATED_MARKER in head or path.parts[-3:-2] == ("provisioning",)


@dataclass
class CheckResult:
    stale: list[str] = field(default_factory=list)  # content differs
    missing: list[str] = field(default_factory=list)  # not on disk
    extra: list[str] = field(default_factory=list)  # generated earlier, no longer rendered

    @property
    def ok(self) -> bool:
        return not (self.stale or self.missing or self.extra)


def check_outputs(outputs: dict[str, str], out_dir: Path) -> CheckResult:
    result = CheckResult()
    for name, text in outputs.items():
        path = out_dir / name
        if not path.is_file():
            result.missing.append(name)
        elif path.read_text(encoding="utf-8") != text:
            result.stale.append(name)
    result.extra = sorted(generated_files(out_dir) - set(outputs))
    return result


@dataclass
class WriteResult:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def write_outputs(outputs: dict[str, str], out_dir: Path) -> WriteResult:
    result = WriteResult()
    for name, text in outputs.items():
        path = out_dir / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            result.unchanged.append(name)
            continue
        write_atomic(path, text, mode=PUBLIC, fsync=False)
        result.written.append(name)
    for name in sorted(generated_files(out_dir) - set(outputs)):
        (out_dir / name).unlink()
        result.removed.append(name)
    return result
