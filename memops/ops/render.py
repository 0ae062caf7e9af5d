"""`invoke render`: render alert rules, their tests, runbooks and dashboards from templates.

Exit codes: 0 rendered (or, with ``check``, up to date); 1 with ``check`` when the
files on disk are stale; 2 on bad input (data file, profile, templates), in which
case nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.ops import options
from memops.ops.runner import Context, InventoryUse, Operation, Outcome
from memops.paths import PROJECT_DIR, TEMPLATES_DIR
from memops.render.driver import RenderError, check_outputs, render_all, write_outputs

DEFAULT_CONFIG = TEMPLATES_DIR / "observability.yml"


def render_files(
    _context: Context | None = None,
    *,
    check: bool = False,
    profile: str = "",
    out: Path | None = None,
    config: Path | None = None,
) -> Outcome:
    config_path = config or DEFAULT_CONFIG
    out_dir = out or PROJECT_DIR
    settings = {
        "check": check,
        "profile": profile or None,
        "out": str(out_dir),
        "config": str(config_path),
    }
    document: dict[str, Any] = {"ok": False, "mode": "check" if check else "write", **settings}
    try:
        outputs = render_all(config_path, out_dir, profile or None)
    except RenderError as exc:
        document["error"] = str(exc)
        return Outcome(EXIT_BAD_INPUT, document, error=str(exc), result="bad-input")
    document["files"] = len(outputs)
    if check:
        return _checked(document, outputs, out_dir)
    written = write_outputs(outputs, out_dir)
    document.update(ok=True, written=written.written, removed=written.removed)
    lines = [
        f"render: {len(written.written)} written, {len(written.unchanged)} unchanged, "
        f"{len(written.removed)} removed in {_shown(out_dir)}"
        + (f" (profile {profile})" if profile else ""),
        *(f"  wrote {name}" for name in written.written),
        *(f"  removed {name}" for name in written.removed),
    ]
    audit = {"written": len(written.written), "removed": len(written.removed)}
    return Outcome(EXIT_OK, document, lines=lines, audit=audit)


def _checked(document: dict[str, Any], outputs: dict[str, str], out_dir: Path) -> Outcome:
    result = check_outputs(outputs, out_dir)
    document.update(ok=result.ok, stale=result.stale, missing=result.missing, extra=result.extra)
    audit = {"files": len(outputs)}
    if result.ok:
        line = f"render --check: {len(outputs)} files up to date in {_shown(out_dir)}"
        return Outcome(EXIT_OK, document, lines=[line], audit=audit)
    problems = (
        [f"{name} (differs)" for name in result.stale]
        + [f"{name} (missing)" for name in result.missing]
        + [f"{name} (no longer rendered)" for name in result.extra]
    )
    error = (
        f"{len(problems)} stale file(s) in {_shown(out_dir)}: {', '.join(problems)}; "
        "run `invoke render`"
    )
    return Outcome(EXIT_FAILED, document, error=error, result="stale", audit=audit)


def _shown(path: Path) -> str:
    try:
        relative = path.relative_to(Path.cwd())
    except ValueError:
        return str(path)
    return str(relative) if str(relative) != "." else "."


RENDER = Operation(
    "render",
    render_files,
    {
        "check": options.described(
            options.flag(), "render in memory and fail (exit 1) when the files on disk differ"
        ),
        "profile": options.described(
            options.text(forbid="/"),
            "apply templates/profiles/NAME.yml (e.g. test: short `for` durations)",
        ),
        "out": options.described(
            options.directory(), "write into this directory instead of the repository"
        ),
        "config": options.described(
            options.existing_file(), "the data file (default: templates/observability.yml)"
        ),
    },
    inventory=InventoryUse.OPTIONAL,
)
