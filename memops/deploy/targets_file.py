"""Write ``targets.json`` at the end of a deploy, merging with what is already there.

A deploy limited to some hosts or tags only knows the components it touched,
so the others keep their previous entries. Every new entry is validated with
the same parser ``invoke health`` uses before anything is written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memops.deploy.targets import TARGETS_FILE, TargetsError, parse_target
from memops.files import write_private_atomic


def merge_targets(
    state_dir: Path, inventory: str, components: dict[str, Any], deployment: dict[str, Any]
) -> bool:
    """Merge ``components`` into the state directory's targets file; return True if it changed.

    ``deployment`` holds facts about how each component was installed (for
    example that Qdrant is the offline stand-in); it is merged the same way. Its
    ``textfile_dir`` is node_exporter's textfile collector directory on the
    monitoring host, where ``invoke health`` publishes its metrics.
    """
    for name, value in components.items():
        parse_target(name, value, f"components.{name}")
    textfile_dir = deployment.get("textfile_dir")
    if textfile_dir is not None and not (
        isinstance(textfile_dir, str) and textfile_dir.startswith("/")
    ):
        raise TargetsError("deployment.textfile_dir: expected an absolute path")
    if not components and not deployment:
        return False  # nothing was deployed (check mode, or every host failed)
    file = state_dir / TARGETS_FILE
    previous = _read_existing(file)
    merged_components = {
        **_renamed_away(previous.get("components", {}), components),
        **components,
    }
    merged_deployment = {**previous.get("deployment", {}), **deployment}
    if (
        previous.get("inventory") == inventory
        and previous.get("components") == merged_components
        and previous.get("deployment", {}) == merged_deployment
    ):
        return False
    document = {
        "inventory": inventory,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "components": merged_components,
        "deployment": merged_deployment,
    }
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private_atomic(file, json.dumps(document, indent=2, sort_keys=True) + "\n")
    return True


def _renamed_away(previous: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """``previous`` without the entries a new naming of their kind replaces.

    A kind on one host is named ``kind``; on several, ``kind@host`` each. When a deploy
    reports a kind under the other naming (a group grew or shrank), the old names go.
    Entries of the same naming stay: a deploy with ``--limit`` reports only some hosts.
    """

    def kind_and_naming(name: str) -> tuple[str, bool]:
        kind, at, _host = name.partition("@")
        return kind, bool(at)

    reported = {kind_and_naming(name) for name in components}
    reported_kinds = {kind for kind, _ in reported}
    return {
        name: value
        for name, value in previous.items()
        if kind_and_naming(name)[0] not in reported_kinds or kind_and_naming(name) in reported
    }


def _read_existing(file: Path) -> dict[str, Any]:
    if not file.exists():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TargetsError(f"{file}: cannot merge into it: {exc}") from None
    return data if isinstance(data, dict) else {}
