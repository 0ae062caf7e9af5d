"""`invoke render`: render alert rules, their tests, runbooks and dashboards from templates.

Exit codes: 0 rendered (or, with ``check``, up to date); 1 with ``check`` when the
files on disk are stale; 2 on bad input (data file, profile, templates), in which
case nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from memops.audit import append_audit
from memops.inventory import PROJECT_DIR, InventoryError, resolve_inventory
from memops.ops.report import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, emit_json, error_line
from memops.render.driver import (
    RenderError,
    check_outputs,
    render_all,
    write_outputs,
)

DEFAULT_CONFIG = PROJECT_DIR / "templates" / "observability.yml"


def render(
    *,
    check: bool = False,
    profile: str = "",
    out: str = "",
    config: str = "",
    as_json: bool = False,
) -> int:
    config_path = Path(config).resolve() if config else DEFAULT_CONFIG
    out_dir = Path(out).resolve() if out else PROJECT_DIR
    arguments = {
        "check": check,
        "profile": profile or None,
        "out": str(out_dir),
        "config": str(config_path),
    }
    document: dict[str, Any] = {"ok": False, "mode": "check" if check else "write", **arguments}
    try:
        outputs = render_all(config_path, out_dir, profile or None)
    except RenderError as exc:
        _audit(arguments, "bad-input", {"error": str(exc)})
        if as_json:
            emit_json({**document, "error": str(exc)})
        error_line("render", str(exc))
        return EXIT_BAD_INPUT
    document["files"] = len(outputs)
    if check:
        result = check_outputs(outputs, out_dir)
        document.update(
            ok=result.ok, stale=result.stale, missing=result.missing, extra=result.extra
        )
        _audit(arguments, "ok" if result.ok else "stale", {"files": len(outputs)})
        if as_json:
            emit_json(document)
        elif result.ok:
            print(f"render --check: {len(outputs)} files up to date in {_shown(out_dir)}")
        if not result.ok:
            problems = (
                [f"{name} (differs)" for name in result.stale]
                + [f"{name} (missing)" for name in result.missing]
                + [f"{name} (no longer rendered)" for name in result.extra]
            )
            error_line(
                "render",
                f"{len(problems)} stale file(s) in {_shown(out_dir)}: {', '.join(problems)}; "
                "run `invoke render`",
            )
            return EXIT_FAILED
        return EXIT_OK
    written = write_outputs(outputs, out_dir)
    document.update(ok=True, written=written.written, removed=written.removed)
    _audit(arguments, "ok", {"written": len(written.written), "removed": len(written.removed)})
    if as_json:
        emit_json(document)
    else:
        print(
            f"render: {len(written.written)} written, {len(written.unchanged)} unchanged, "
            f"{len(written.removed)} removed in {_shown(out_dir)}"
            + (f" (profile {profile})" if profile else "")
        )
        for name in written.written:
            print(f"  wrote {name}")
        for name in written.removed:
            print(f"  removed {name}")
    return EXIT_OK


def _audit(arguments: dict[str, Any], result: str, details: dict[str, Any]) -> None:
    """One audit line in the default inventory's state directory, when there is one."""
    try:
        inventory = resolve_inventory(os.environ.get("MEMOPS_INVENTORY", "local"))
        append_audit(inventory.state_dir, "render", arguments, result, details)
    except (InventoryError, OSError):
        pass  # rendering does not need an inventory; the audit line is best effort


def _shown(path: Path) -> str:
    try:
        relative = path.relative_to(Path.cwd())
    except ValueError:
        return str(path)
    return str(relative) if str(relative) != "." else "."
