"""`invoke health`: one probe cycle over every deployed component."""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Any

from memops.clients import qdrant_client
from memops.deploy.inventory import Inventory
from memops.deploy.targets import TARGETS_FILE, QdrantTarget, Targets, TargetsError, load_targets
from memops.health.cycle import HealthSnapshot, run_cycle
from memops.health.metrics import write_textfile
from memops.health.state import HealthStateError
from memops.ops import options
from memops.ops.runner import Context, Operation, Outcome
from memops.probes import DEFAULT_TIMEOUT_S
from memops.probes.result import QUARANTINE_PARTIAL, RELEASE_PARTIAL
from memops.quarantine import state as quarantine_state
from memops.quarantine.qdrant import written_since

DEFAULT_RETRIES = 1


def deployed_targets(inventory: Inventory) -> Targets:
    """What the last deploy of ``inventory`` recorded; TargetsError when nothing was."""
    if not (inventory.state_dir / TARGETS_FILE).exists():
        raise TargetsError(
            f"nothing deployed for inventory {inventory.name!r} "
            f"({inventory.state_dir / TARGETS_FILE} is missing): run `invoke deploy` first"
        )
    return load_targets(inventory.state_dir)


def health_cycle(
    targets: Targets,
    state_dir: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
    quarantines: dict[str, dict[str, Any]] | None = None,
) -> tuple[HealthSnapshot, list[str]]:
    """One probe cycle, and its metrics in node_exporter's textfile directory when deployed.

    ``quarantines`` is the quarantine record (read from ``state_dir`` when not
    given): a tier an unfinished quarantine or release left open degrades its
    component. Returns the snapshot and notes about side channels that failed
    (they do not change the verdict).
    """
    notes: list[str] = []
    if quarantines is None:
        quarantines, notes = read_quarantines(state_dir)
    soft = unfinished_findings(targets, quarantines)
    snapshot = run_cycle(targets, state_dir, timeout_s=timeout_s, retries=retries, soft=soft)
    textfile_dir = targets.deployment.get("textfile_dir")
    if isinstance(textfile_dir, str) and textfile_dir:
        try:
            write_textfile(snapshot, targets.inventory or "unknown", Path(textfile_dir))
        except OSError as exc:
            notes.append(f"could not publish metrics to {textfile_dir}: {exc}")
    return snapshot, notes


def read_quarantines(state_dir: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The quarantine record, or none and a note saying why it cannot be read."""
    try:
        return quarantine_state.load(state_dir), []
    except quarantine_state.QuarantineStateError as exc:
        return {}, [str(exc)]


def unfinished_findings(
    targets: Targets, quarantines: dict[str, dict[str, Any]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Component -> reason code -> details, for the tiers unfinished runs left open.

    The application sees such a namespace in some tiers and not in others: the
    components of those tiers are degraded (``quarantine_partial`` or
    ``release_partial``, the tenants in the details) until a re-run finishes.
    """
    soft: dict[str, dict[str, dict[str, Any]]] = {}
    for tenant, still_open in quarantine_state.unfinished(quarantines).items():
        for tier, run in still_open.items():
            code = RELEASE_PARTIAL if run.get("action") == "release" else QUARANTINE_PARTIAL
            for name, target in targets.components.items():
                if target.kind == tier:
                    codes = soft.setdefault(name, {})
                    codes.setdefault(code, {code: []})[code].append(tenant)
    return soft


def health(context: Context, *, timeout: float, retries: int) -> Outcome:
    inventory = context.require_inventory()
    quarantines, notes = read_quarantines(inventory.state_dir)
    try:
        targets = deployed_targets(inventory)
        snapshot, cycle_notes = health_cycle(
            targets,
            inventory.state_dir,
            timeout_s=timeout,
            retries=retries,
            quarantines=quarantines,
        )
    except (TargetsError, HealthStateError) as exc:
        return Outcome.refused(str(exc))
    notes += cycle_notes
    document = snapshot.to_dict()
    lines = snapshot_lines(snapshot, targets)
    report, report_lines = quarantine_report(quarantines)
    document |= report
    lines += report_lines
    written, note = written_during_quarantine(targets, quarantines, timeout)
    notes += [note] if note else []
    if written:
        document["written_during_quarantine"] = written
        lines += [written_line(tenant, found) for tenant, found in sorted(written.items())]
    return Outcome(
        snapshot.exit_code,
        document,
        lines=lines,
        notes=notes,
        result=str(snapshot.state),
    )


def quarantine_report(
    quarantines: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any], list[str]]:
    """The record's part of ``invoke health --json``, and its lines.

    ``quarantined``: tenant -> the tiers it is quarantined in (a note, not a
    failure). ``quarantine_unfinished``: tenant -> the tiers a quarantine or
    release left open (their components are degraded: ``unfinished_findings``).
    """
    report: dict[str, Any] = {}
    lines = []
    in_force = quarantine_state.in_force(quarantines)
    if in_force:
        report["quarantined"] = {t: quarantine_state.done_tiers(e) for t, e in in_force.items()}
        lines.append(quarantine_line(in_force))
    unfinished = quarantine_state.unfinished(quarantines)
    if unfinished:
        report["quarantine_unfinished"] = {
            tenant: {"quarantined": quarantine_state.done_tiers(quarantines[tenant]), "open": runs}
            for tenant, runs in unfinished.items()
        }
        lines += [line for t, runs in unfinished.items() for line in unfinished_lines(t, runs)]
    return report, lines


def quarantine_line(quarantined: dict[str, dict[str, Any]]) -> str:
    shown = ", ".join(
        f"{tenant!r} ({', '.join(entry.get('tiers', []))}, since {entry.get('since', '?')})"
        for tenant, entry in sorted(quarantined.items())
    )
    count = len(quarantined)
    return f"quarantined namespaces ({count}): {shown}; `invoke rebuild.release NS` lifts one"


def unfinished_lines(tenant: str, runs: dict[str, dict[str, Any]]) -> list[str]:
    """One line per action left unfinished on ``tenant``, with the command that finishes it."""
    lines = []
    for action in ("quarantine", "release"):
        tiers = [t for t in quarantine_state.TIERS if runs.get(t, {}).get("action") == action]
        if tiers:
            again = f"invoke rebuild.{action} {shlex.quote(tenant)} --tier {','.join(tiers)}"
            lines.append(
                f"unfinished {action} of namespace {tenant!r}: still open in "
                f"{', '.join(tiers)}; `{again}` finishes it"
            )
    return lines


def written_during_quarantine(
    targets: Targets, quarantined: dict[str, dict[str, Any]], timeout_s: float
) -> tuple[dict[str, dict[str, int]], str]:
    """Points the application wrote for quarantined tenants into shared collections.

    Its Qdrant token reaches the shared collections, and Qdrant cannot keep it off one
    tenant there (``memops.quarantine.qdrant``). Returns them by tenant and
    collection, and a note when Qdrant could not be asked.
    """
    moved = {
        tenant: entry["qdrant_moves"]
        for tenant, entry in quarantined.items()
        if entry.get("qdrant_moves") and _qdrant_done(entry)
    }
    target = targets.components.get("qdrant")
    if not moved or not isinstance(target, QdrantTarget):
        return {}, ""
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        with contextlib.closing(qdrant_client(target, timeout_s=timeout_s)) as client:
            found = {t: written_since(client, t, sources) for t, sources in moved.items()}
    except (httpx.HTTPError, ResponseHandlingException, UnexpectedResponse) as exc:
        # the probe's own line says what is wrong with Qdrant
        return {}, f"could not count points written during the quarantine: {type(exc).__name__}"
    return {t: counts for t, counts in found.items() if counts}, ""


def _qdrant_done(entry: dict[str, Any]) -> bool:
    """Quarantined in Qdrant, and no run half way: every point of the tenant there is new."""
    open_tiers = quarantine_state.open_tiers(entry)
    return "qdrant" in quarantine_state.done_tiers(entry) and "qdrant" not in open_tiers


def written_line(tenant: str, found: dict[str, int]) -> str:
    where = ", ".join(f"{n} in {c}" for c, n in sorted(found.items()))
    return (
        f"quarantined namespace {tenant!r}: the application wrote point(s) since ({where}); "
        f"`invoke rebuild.validate {shlex.quote(tenant)}` checks them"
    )


def node_part(details: dict[str, Any]) -> str:
    """A replicated node's part, as its probe found it: primary, replica of …, sentinel."""
    role = details.get("role")
    if role == "sentinel":
        return f"  sentinel: primary {details.get('primary')}, ckquorum {details.get('ckquorum')}"
    if role == "slave":
        return (
            f"  replica of {details.get('master_host')}:{details.get('master_port')} "
            f"(link {details.get('master_link_status')})"
        )
    if role == "master" and (count := details.get("connected_replicas")):
        return f"  primary ({count} replica{'' if count == 1 else 's'})"
    if isinstance(patroni := details.get("patroni"), dict):
        return patroni_part(patroni, details.get("replication_lag_s"))
    return ""


def patroni_part(patroni: dict[str, Any], lag_s: Any) -> str:
    """A Patroni member's part: leader, sync_standby or replica, its timeline and lag."""
    part = f"  {patroni.get('role')} (timeline {patroni.get('timeline')}"
    if patroni.get("role") != "leader":
        part += f", lag {patroni.get('lag_bytes')} B / {lag_s} s"
    return part + ")"


def snapshot_lines(snapshot: HealthSnapshot, targets: Targets) -> list[str]:
    width = max(len(name) for name in snapshot.components)
    lines = []
    for name, component in sorted(snapshot.components.items()):
        target = targets.components.get(name)
        endpoint = target.endpoint if target else "?"
        reasons = ", ".join(component.reason_codes)
        shown = f"  {reasons}" if reasons and str(component.state) != "healthy" else ""
        part = node_part(component.details)
        lines.append(
            f"{name:<{width}}  {component.state!s:<8}  {component.latency_ms:7.1f} ms  "
            f"{endpoint}{part}{shown}"
        )
    lines.append(
        f"stack: {snapshot.state} (failure_streak {snapshot.failure_streak}, "
        f"queue_depth {snapshot.queue_depth}, checked {snapshot.checked_at})"
    )
    return lines


HEALTH = Operation(
    "health",
    health,
    {
        "timeout": options.described(
            options.number(default=DEFAULT_TIMEOUT_S, greater_than=0, at_most=300),
            f"seconds per probe attempt (default {DEFAULT_TIMEOUT_S:g})",
        ),
        "retries": options.described(
            options.integer(default=DEFAULT_RETRIES, minimum=0, maximum=10),
            f"retries of a failed probe, 0-10 (default {DEFAULT_RETRIES})",
        ),
    },
)
