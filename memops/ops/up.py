"""`invoke up`: render observability files, deploy the stack, probe it, print what runs where."""

from __future__ import annotations

from urllib.parse import urlsplit

from memops.inventory import PROJECT_DIR
from memops.ops.deploy import run_deploy
from memops.ops.health import health_cycle, load_inventory_targets
from memops.ops.render import DEFAULT_CONFIG
from memops.ops.report import EXIT_OK, emit_json, error_line
from memops.playbook import PlaybookOptions
from memops.render.driver import RenderError, render_all, write_outputs
from memops.targets import Targets, TargetsError

STANDIN_NOTE = (
    "Qdrant stand-in (no Qdrant release was installable offline; set qdrant_archive "
    "or qdrant_release_url + qdrant_release_sha256 for the real server)"
)


# components whose web UI an operator opens, in the order the summary lists them
UI_COMPONENTS = ("prometheus", "alertmanager")


def web_urls(targets: Targets) -> dict[str, str]:
    """Base URLs of Prometheus and Alertmanager (their health targets are http URLs)."""
    urls = {}
    for name in UI_COMPONENTS:
        endpoint = getattr(targets.components.get(name), "endpoint", "")
        parts = urlsplit(endpoint)
        if parts.scheme and parts.netloc:
            urls[name] = f"{parts.scheme}://{parts.netloc}/"
    return urls


def up(inventory_spec: str, *, as_json: bool) -> int:
    # Alert rules and dashboards first: the deploy installs the rendered files.
    try:
        rendered = write_outputs(render_all(DEFAULT_CONFIG, PROJECT_DIR), PROJECT_DIR)
    except RenderError as exc:
        if as_json:
            emit_json({"ok": False, "stage": "render", "error": str(exc)})
        error_line("up", f"render: {exc}")
        return 2
    if not as_json and rendered.written:
        print(f"render: rewrote {len(rendered.written)} file(s) from templates/")
    outcome = run_deploy(inventory_spec, PlaybookOptions(), echo=not as_json, command="up")
    if outcome.exit_code != EXIT_OK:
        if as_json:
            emit_json({"ok": False, "stage": "deploy", "error": outcome.error})
        error_line("up", outcome.error)
        return outcome.exit_code
    try:
        state_dir, targets = load_inventory_targets(inventory_spec)
    except TargetsError as exc:
        error_line("up", str(exc))
        return 2
    snapshot = health_cycle(targets, state_dir)
    deployment = targets.deployment
    rows = []
    for name, component in sorted(snapshot.components.items()):
        rows.append(
            {
                "component": name,
                "endpoint": targets.components[name].endpoint,
                "state": str(component.state),
                "note": STANDIN_NOTE if deployment.get(name, {}).get("standin") else "",
            }
        )
    if as_json:
        emit_json(
            {
                "ok": snapshot.exit_code == EXIT_OK,
                "inventory": targets.inventory,
                "changed": outcome.result.changed if outcome.result else 0,
                "health": snapshot.to_dict(),
                "components": rows,
                "urls": web_urls(targets),
                "rendered": rendered.written,
                "state_dir": str(state_dir),
            }
        )
    else:
        print(f"\nmemops stack on inventory {targets.inventory} (state in {state_dir}):")
        for row in rows:
            note = f"  [{row['note']}]" if row["note"] else ""
            print(f"  {row['component']:<18} {row['state']:<8} {row['endpoint']}{note}")
        for name, url in web_urls(targets).items():
            print(f"{name.capitalize()}: {url}")
        print(f"stack: {snapshot.state}; secrets and targets.json are in {state_dir} (mode 0600)")
    if snapshot.exit_code != EXIT_OK:
        error_line("up", f"stack is {snapshot.state} after deploy; run `invoke health` for details")
    return snapshot.exit_code
