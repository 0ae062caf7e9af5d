"""`invoke up`: render, deploy the stack and its monitoring, probe it, back it up, drill it.

It composes the render, deploy, health, backup.create and backup.drill operations on
one resolved inventory (one lock, one audit line) instead of re-implementing them: a
stack is up when it is healthy and its data demonstrably comes back.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from memops.deploy.targets import Targets, TargetsError
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.ops.backup import create as create_backup
from memops.ops.deploy import deploy
from memops.ops.drill import drill_outcome
from memops.ops.health import deployed_targets, health_cycle
from memops.ops.render import render_files
from memops.ops.runner import Context, Operation, Outcome

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


def standin_note(targets: Targets, component: str) -> str:
    """Why a component runs as the stand-in, or "" when it is the real thing."""
    entry = targets.deployment.get(component, {})
    if not isinstance(entry, dict) or not entry.get("standin"):
        return ""
    reason = entry.get("reason")
    return f"{STANDIN_NOTE}: {reason}" if isinstance(reason, str) and reason else STANDIN_NOTE


def up(context: Context) -> Outcome:
    inventory = context.require_inventory()
    # Alert rules and dashboards first: the deploy installs the rendered files.
    rendered = render_files(context)
    if not rendered.ok:
        return _stopped("render", rendered)
    deployed = deploy(context, limit="", tags=(), check=False, diff=False)
    if not deployed.ok:
        return _stopped("deploy", deployed)
    try:
        targets = deployed_targets(inventory)
        snapshot, notes = health_cycle(targets, inventory.state_dir)
    except TargetsError as exc:
        return Outcome.refused(str(exc))
    rows = [
        {
            "component": name,
            "endpoint": targets.components[name].endpoint,
            "state": str(component.state),
            "note": standin_note(targets, name),
        }
        for name, component in sorted(snapshot.components.items())
    ]
    written = list(rendered.document.get("written", []))
    document: dict[str, Any] = {
        "ok": snapshot.exit_code == EXIT_OK,
        "inventory": targets.inventory,
        "changed": deployed.document.get("changed", 0),
        "health": snapshot.to_dict(),
        "components": rows,
        "urls": web_urls(targets),
        "rendered": written,
        "state_dir": str(inventory.state_dir),
    }
    lines = [f"render: rewrote {len(written)} file(s) from templates/"] if written else []
    lines.append(
        f"\nmemops stack on inventory {targets.inventory} (state in {inventory.state_dir}):"
    )
    for row in rows:
        note = f"  [{row['note']}]" if row["note"] else ""
        lines.append(f"  {row['component']:<18} {row['state']:<8} {row['endpoint']}{note}")
    lines += [f"{name.capitalize()}: {url}" for name, url in web_urls(targets).items()]
    lines.append(
        f"stack: {snapshot.state}; secrets and targets.json are in {inventory.state_dir} "
        "(mode 0600)"
    )
    audit = {"changed": document["changed"], "health": str(snapshot.state)}
    if snapshot.exit_code != EXIT_OK:
        error = f"stack is {snapshot.state} after deploy; run `invoke health` for details"
        return Outcome(
            snapshot.exit_code, document, lines=lines, error=error, notes=notes, audit=audit
        )
    # A stack is up when its data can come back: take a set, then drill it.
    backup = create_backup(context, tier=(), namespace=(), target="")
    document["backup"] = dict(backup.document)
    audit["backup"] = backup.document.get("set_id", "")
    if not backup.ok:
        lines.append(f"backup: FAILED: {backup.error}")
        return Outcome(
            EXIT_FAILED,
            document | {"ok": False},
            lines=lines,
            error=f"backup: {backup.error}",
            notes=notes,
            audit=audit,
        )
    drill = drill_outcome(inventory, context, set_id=str(backup.document["set_id"]), target="")
    document["drill"] = dict(drill.document)
    lines.append(f"backup: set {backup.document['set_id']} taken and verified")
    lines.append(
        f"drill: {'passed' if drill.ok else 'FAILED'}, RTO {drill.document.get('rto_seconds')} s"
    )
    document["ok"] = drill.ok
    return Outcome(
        EXIT_OK if drill.ok else EXIT_FAILED,
        document,
        lines=lines,
        error="" if drill.ok else f"drill: {drill.error}",
        notes=notes,
        audit=audit,
    )


def _stopped(stage: str, outcome: Outcome) -> Outcome:
    """``up`` ends at the first stage that did not succeed, and says which."""
    document = {"ok": False, "stage": stage, "error": outcome.error}
    code = outcome.exit_code if outcome.exit_code else EXIT_BAD_INPUT
    return Outcome(code, document, error=f"{stage}: {outcome.error}", audit=dict(outcome.audit))


UP = Operation("up", up, locks=True)
