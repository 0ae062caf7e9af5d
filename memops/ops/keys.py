"""The `keys.*` operations: the key ring of encrypted memory values, and its rotation.

``keys.init`` creates the first ring; ``keys.status`` lists its key ids and how
many Redis values each one seals; ``keys.rotate`` adds a new key, makes it
active, saves the ring and only then re-encrypts the values (resuming an
interrupted rotation from its checkpoint instead when there is one);
``keys.retire`` removes a key that no value names any more, neither in Redis nor in
a backup set the store still holds (each set's manifest records the key ids of its
sealed values, ``memops.backup.sealed_keys``; ``--force`` retires anyway and names
the sets left with values no key opens). Key ids are fingerprints, safe to print
and audit; the secrets stay in the ring file.

A refusal before anything changed (no ring, an unsafe ring file, nothing
deployed, an unknown or active key, not confirmed) is exit 2; Redis failing
(down, wrong password) is exit 1 and leaves the checkpoint to resume from.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memops.backup.artifacts import BackupError
from memops.backup.engines import tier_target
from memops.backup.sealed_keys import SetsNeeding, sets_needing
from memops.backup.settings import BackupSettings, inventory_vars
from memops.clients import redis_client
from memops.deploy.inventory import Inventory
from memops.deploy.targets import Targets, TargetsError
from memops.errors import Failed, MemopsError, Refused
from memops.exitcodes import EXIT_FAILED, EXIT_OK
from memops.keys.ring import (
    KeyRing,
    KeyRingError,
    is_vaulted,
    keyring_path,
    load_keyring,
    new_keyring,
    save_keyring,
)
from memops.keys.rotation import (
    Checkpoint,
    CheckpointError,
    Counts,
    checkpoint_path,
    load_checkpoint,
    rotate_values,
    save_checkpoint,
    start_checkpoint,
)
from memops.memory.redis_scan import DEFAULT_BATCH, NOT_SEALED, key_id_counts
from memops.model import DEFAULT_PREFIX, memory_pattern
from memops.ops import options
from memops.ops.backup import probe_line
from memops.ops.confirm import NotConfirmed, confirm
from memops.ops.health import deployed_targets
from memops.ops.runner import Context, Operation, Outcome

if TYPE_CHECKING:
    import redis

MAX_BATCH = 10_000


def ring_file(inventory: Inventory) -> Path:
    return keyring_path(inventory_vars(inventory), inventory.state_dir)


def _ring(path: Path) -> KeyRing:
    try:
        ring = load_keyring(path)
    except KeyRingError as exc:
        raise Refused(str(exc)) from None
    if ring is None:
        raise Refused(f"no key ring at {path}: create one with `invoke keys.init`")
    return ring


def _checkpoint(inventory: Inventory) -> Checkpoint | None:
    try:
        return load_checkpoint(checkpoint_path(inventory.state_dir))
    except CheckpointError as exc:
        raise Refused(str(exc)) from None


def _redis(inventory: Inventory) -> tuple[Targets, redis.Redis, str]:
    """The deployed Redis, answering PING, and the key prefix of its memory values."""
    import redis

    try:
        targets = deployed_targets(inventory)
        target = tier_target(targets, "redis")
    except (TargetsError, BackupError) as exc:
        raise Refused(str(exc)) from None
    prefix = str((targets.deployment.get("redis") or {}).get("key_prefix") or DEFAULT_PREFIX)
    client = redis_client(target, timeout_s=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise Failed(f"redis {target.host}:{target.port}: {exc}") from None
    return targets, client, prefix


def _redis_error(exc: Exception, during: str) -> Failed:
    return Failed(f"redis: {exc} ({during})")


# -- keys.init ---------------------------------------------------------------------------


def init(context: Context, *, vault: bool) -> Outcome:
    path = ring_file(context.require_inventory())
    try:
        ring = load_keyring(path)
        if ring is None:
            ring = new_keyring()
            save_keyring(path, ring, vault=vault)
            created = True
        else:
            created = False
    except KeyRingError as exc:
        return Outcome.from_error(exc)
    vaulted = is_vaulted(path)
    document = {
        "ok": True,
        "keyring": str(path),
        "created": created,
        "active": ring.active,
        "vault": vaulted,
    }
    how = "mode 0600, Ansible Vault" if vaulted else "mode 0600"
    line = (
        f"created key ring {path} ({how}) with one key: {ring.active} (active)"
        if created
        else f"key ring {path} already exists (active key {ring.active}): nothing changed"
    )
    return Outcome(
        EXIT_OK,
        document,
        lines=[line],
        result="created" if created else "unchanged",
        audit={"active": ring.active, "created": created},
    )


# -- keys.status -------------------------------------------------------------------------


def status(context: Context, *, batch: int) -> Outcome:
    inventory = context.require_inventory()
    path = ring_file(inventory)
    import redis

    try:
        ring = _ring(path)
        checkpoint = _checkpoint(inventory)
        _targets, client, prefix = _redis(inventory)
        with client:
            try:
                counts = key_id_counts(client, prefix, batch)
            except redis.RedisError as exc:
                raise _redis_error(exc, "counting values") from None
    except MemopsError as exc:
        return Outcome.from_error(exc, keyring=str(path))
    plain = counts.pop(NOT_SEALED, 0)
    unknown = {k: n for k, n in counts.items() if k not in ring.keys}
    document = {
        "ok": not unknown,
        "keyring": str(path),
        "vault": is_vaulted(path),
        "active": ring.active,
        "keys": {key_id: counts.get(key_id, 0) for key_id in sorted(ring.keys)},
        "not_sealed": plain,
        "unknown_keys": unknown,
        "pattern": memory_pattern(prefix),
        "rotation": _rotation_state(checkpoint),
    }
    vaulted = " (Ansible Vault)" if is_vaulted(path) else ""
    lines = [f"key ring {path}{vaulted}: {len(ring.keys)} key(s); values {memory_pattern(prefix)}:"]
    for key_id in sorted(ring.keys, key=lambda k: (k != ring.active, k)):
        mark = "  active" if key_id == ring.active else ""
        lines.append(f"  {key_id}  {counts.get(key_id, 0):>9,} values{mark}")
    lines.append(f"  {'not sealed':<16}  {plain:>9,} values (plain, or no key id)")
    notes = [
        f"{n:,} values name key {k}, which is not in the ring: they cannot be read"
        for k, n in sorted(unknown.items())
    ]
    lines.append(_rotation_line(checkpoint))
    return Outcome(
        EXIT_OK if not unknown else EXIT_FAILED,
        document,
        lines=lines,
        notes=notes,
        error="values sealed with keys the ring does not hold" if unknown else "",
        audit={"active": ring.active, "keys": sorted(ring.keys)},
    )


def _rotation_state(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {
        "to_key": checkpoint.to_key,
        "from_keys": list(checkpoint.from_keys),
        "finished": checkpoint.finished,
        "batches": checkpoint.batches,
        "counts": checkpoint.counts.to_dict(),
        "started_at": checkpoint.started_at,
        "updated_at": checkpoint.updated_at,
    }


def _rotation_line(checkpoint: Checkpoint | None) -> str:
    if checkpoint is None:
        return "rotation: none recorded"
    if checkpoint.finished:
        return (
            f"rotation: the last one, to {checkpoint.to_key}, finished at "
            f"{checkpoint.updated_at} ({_counts_text(checkpoint.counts)})"
        )
    return (
        f"rotation: to {checkpoint.to_key} UNFINISHED, stopped after {checkpoint.batches} "
        f"batch(es) at {checkpoint.updated_at}: run `invoke keys.rotate` to resume it"
    )


def _counts_text(counts: Counts, *, moved: str = "moved") -> str:
    text = (
        f"{counts.moved:,} {moved}, {counts.current:,} already current, {counts.plain:,} plain, "
        f"{counts.changed:,} changed meanwhile (left as written), {counts.gone:,} gone"
    )
    if counts.unreadable:
        reasons = ", ".join(f"{r} {n:,}" for r, n in counts.unreadable.items())
        text += f", {counts.unread:,} unreadable ({reasons})"
    return text


# -- keys.rotate -------------------------------------------------------------------------


def rotate(context: Context, *, batch: int, no_new_key: bool, dry_run: bool, yes: bool) -> Outcome:
    inventory = context.require_inventory()
    path = ring_file(inventory)
    state_path = checkpoint_path(inventory.state_dir)
    import redis

    try:
        ring = _ring(path)
        previous = _checkpoint(inventory)
        targets, client, prefix = _redis(inventory)
    except MemopsError as exc:
        return Outcome.from_error(exc, keyring=str(path))
    with client:
        resuming = previous is not None and previous.resumes(ring, prefix)
        if resuming:
            assert previous is not None
            plan, question = previous, f"resume the rotation to key {ring.active}"
        elif no_new_key:
            plan = start_checkpoint(ring.active, ring, prefix)
            question = f"re-encrypt {memory_pattern(prefix)} under the active key {ring.active}"
        else:
            ring = ring.with_new_key()  # only in memory until confirmed
            plan = start_checkpoint(ring.active, ring, prefix)
            question = (
                f"add a new key to the key ring {path}, make it active and "
                f"re-encrypt {memory_pattern(prefix)} under it"
            )
        try:
            if dry_run:
                done = rotate_values(client, ring, plan, None, batch=batch, dry_run=True)
                drawn = not (resuming or no_new_key)  # a key that was never saved
                return _rotate_outcome(done, ring, path, resuming, dry_run=True, drawn=drawn)
            confirm(question, yes=yes)
            # The order keeps every value readable and a crash harmless: the checkpoint
            # names the new key first (no secret in it), then the ring gains the key
            # and makes it active, and only then is a value rewritten. A crash before
            # the ring is saved leaves a checkpoint whose key is not active: ignored.
            if not resuming:
                save_checkpoint(state_path, plan)
                save_keyring(path, ring)
            done = rotate_values(client, ring, plan, state_path, batch=batch)
        except NotConfirmed as exc:
            return Outcome.from_error(exc, keyring=str(path))
        except KeyRingError as exc:
            return Outcome.from_error(Failed(str(exc)), keyring=str(path))
        except redis.RedisError as exc:
            stopped = _checkpoint(inventory)
            where = (
                f"stopped after {stopped.batches} batch(es); the checkpoint {state_path} "
                "resumes it: run `invoke keys.rotate` again"
                if stopped is not None and stopped.resumes(ring, prefix)
                else "no value was rewritten"
            )
            return Outcome.from_error(_redis_error(exc, where), keyring=str(path))
    outcome = _rotate_outcome(done, ring, path, resuming, dry_run=False)
    health, health_line = probe_line(targets, inventory)
    return replace(
        outcome,
        document={**outcome.document, "health": health},
        lines=(*outcome.lines, health_line),
    )


def _rotate_outcome(
    done: Checkpoint,
    ring: KeyRing,
    path: Path,
    resumed: bool,
    *,
    dry_run: bool,
    drawn: bool = False,
) -> Outcome:
    """``drawn``: a dry run's ring holds a new key that exists only in memory."""
    counts = done.counts
    older = sorted(k for k in ring.keys if k != ring.active)
    document = {
        "ok": True,
        "dry_run": dry_run,
        "keyring": str(path),
        "active": None if drawn else ring.active,
        "older_keys": older,
        "resumed": resumed,
        "batches": done.batches,
        "counts": counts.to_dict(),
    }
    if dry_run:
        key = "a new key" if drawn else f"key {ring.active}"
        lines = [
            f"dry run: would re-encrypt under {key}: {_counts_text(counts, moved='would move')}",
            "nothing changed (no value, no key ring, no checkpoint)",
        ]
    else:
        how = "resumed and finished" if resumed else "finished"
        lines = [
            f"rotation to key {ring.active} {how} in {done.batches} batch(es): "
            f"{_counts_text(counts)}"
        ]
        if older:
            shown = ", ".join(older)
            lines.append(
                f"older key(s) still in the ring: {shown}; retire each with "
                "`invoke keys.retire KEY_ID` once `invoke keys.status` shows 0 values under it"
            )
    notes = []
    if counts.changed:
        notes.append(
            f"{counts.changed:,} value(s) changed while being re-encrypted and were left as "
            "their writer left them: `invoke keys.status` shows whether any names an older key"
        )
    if counts.unreadable:
        notes.append(
            f"{counts.unread:,} value(s) could not be read and were left untouched "
            "(`invoke rebuild.validate NS` names them, when available)"
        )
    audit = {"active": None if drawn else ring.active, "batches": done.batches}
    return Outcome(
        EXIT_OK,
        document,
        lines=lines,
        notes=notes,
        result="dry-run" if dry_run else "ok",
        audit=audit | counts.to_dict(),
    )


# -- keys.retire -------------------------------------------------------------------------

SHOWN_SETS = 10  # set ids a refusal names; --json lists every one


def _set_names(manifests: tuple[Any, ...]) -> str:
    names = [m.set_id for m in manifests]
    shown = ", ".join(names[:SHOWN_SETS])
    return shown + (f" and {len(names) - SHOWN_SETS} more" if len(names) > SHOWN_SETS else "")


def _retained_sets(inventory: Inventory, key_id: str) -> tuple[SetsNeeding | None, str, str]:
    """The sets of the inventory's backup store that need ``key_id``; the store; a problem.

    Every complete set in the store counts: it can be restored until prune removes it.
    """
    settings = BackupSettings.of(inventory)
    try:
        store = settings.store()
    except BackupError as exc:
        return None, "the backup store", str(exc)
    try:
        listing = store.list_sets()
    except BackupError as exc:
        return None, store.description, str(exc)
    return sets_needing(listing.sets, key_id), store.description, ""


def _sets_refusal(key_id: str, found: SetsNeeding, store: str) -> str:
    needing, unknown = found.needing, found.unknown
    parts = []
    if needing:
        parts.append(
            f"is still needed by {len(needing)} retained backup set(s) ({_set_names(needing)})"
        )
    if unknown:
        sets = f"{len(unknown)}" if needing else f"{len(unknown)} retained backup set(s)"
        parts.append(
            f"may be needed by {sets} that do not record which keys their values use "
            f"(taken by an older memops: {_set_names(unknown)})"
        )
    return (
        f"key {key_id} {' and '.join(parts)}: restored after the retire, their values sealed "
        f"with it would open with no key; retire it once they have left {store} "
        "(backup.prune removes them as the retention policy allows), or pass --force"
    )


def _forced_line(key_id: str, found: SetsNeeding | None, problem: str, *, dry_run: bool) -> str:
    """What --force leaves behind: the sets whose values no key will open."""
    if found is None:
        return (
            f"the backup sets could not be checked ({problem}): any of them may hold "
            f"values sealed with key {key_id}"
        )
    will = "would hold" if dry_run else "hold"
    sets = (*found.needing, *found.unknown)
    now = "once it is removed" if dry_run else "now"
    return (
        f"{len(sets)} retained backup set(s) {will} values sealed with key {key_id} "
        f"that no key opens {now}: {_set_names(sets)}; restore them only with a copy of the "
        "ring from before this retire"
    )


def retire(
    context: Context, *, key_id: str, batch: int, force: bool, dry_run: bool, yes: bool
) -> Outcome:
    inventory = context.require_inventory()
    path = ring_file(inventory)
    import redis

    try:
        ring = _ring(path)
        if key_id not in ring.keys:
            known = ", ".join(sorted(ring.keys))
            raise Refused(f"key {key_id} is not in the key ring {path} (it holds {known})")
        if key_id == ring.active:
            raise Refused(
                f"key {key_id} is the active key: `invoke keys.rotate` to a new key first"
            )
        checkpoint = _checkpoint(inventory)
        if checkpoint is not None and not checkpoint.finished:
            raise Refused(
                f"a rotation to key {checkpoint.to_key} is unfinished: "
                "finish it with `invoke keys.rotate` first"
            )
        _targets, client, prefix = _redis(inventory)
        with client:
            try:
                counts: Counter[str] = key_id_counts(client, prefix, batch)
            except redis.RedisError as exc:
                raise _redis_error(exc, "counting values; nothing changed") from None
        using = counts.get(key_id, 0)
        if using:
            raise Refused(
                f"{using:,} value(s) under {memory_pattern(prefix)} are still sealed with key "
                f"{key_id}: run `invoke keys.rotate --no-new-key` to move them, then retire it"
            )
        found, store, problem = _retained_sets(inventory, key_id)
        if not force:
            if problem:
                raise Failed(
                    f"cannot read the backup sets in {store}: {problem}; retire key {key_id} "
                    "once they can be checked, or pass --force"
                )
            if found is not None and found.found:
                raise Refused(_sets_refusal(key_id, found, store))
        forced = bool(problem) or (found is not None and found.found)
        backups = {
            "store": store,
            "problem": problem,
            **(found.to_dict() if found is not None else {"needing": {}, "unknown": []}),
        }
        document = {
            "ok": True,
            "keyring": str(path),
            "key_id": key_id,
            "dry_run": dry_run,
            "forced": forced,
            "backup_sets": backups,
        }
        notes = [_forced_line(key_id, found, problem, dry_run=dry_run)] if forced else []
        if dry_run:
            needed = "" if forced else ", no retained backup set needs it"
            line = f"dry run: would remove key {key_id} from {path}; no value uses it{needed}"
            return Outcome(
                EXIT_OK,
                document,
                lines=[line, "nothing changed"],
                notes=notes,
                result="dry-run",
            )
        confirm(f"remove key {key_id} from the key ring {path} for good", yes=yes)
        save_keyring(path, ring.without_key(key_id))
    except MemopsError as exc:
        return Outcome.from_error(exc, keyring=str(path), key_id=key_id)
    left = sorted(k for k in ring.keys if k != key_id)
    audit: dict[str, Any] = {"key_id": key_id}
    if forced:
        audit |= {
            "forced": True,
            "sets_needing": sorted(backups["needing"]),
            "sets_unknown": backups["unknown"],
            "backup_problem": problem,
        }
    return Outcome(
        EXIT_OK,
        {**document, "keys": left},
        lines=[f"retired key {key_id}: the ring {path} now holds {', '.join(left)}"],
        notes=notes,
        result="forced" if forced else "",
        audit=audit,
    )


FORCE_HELP = (
    "retire even though retained backup sets hold values sealed with the key (or cannot "
    "be checked): those sets then restore values no key opens; names them and audits it"
)
_BATCH = options.described(
    options.integer(default=DEFAULT_BATCH, minimum=1, maximum=MAX_BATCH),
    f"values read and rewritten per SCAN step and Lua call (default {DEFAULT_BATCH})",
)

INIT = Operation(
    "keys.init",
    init,
    {
        "vault": options.described(
            options.flag(),
            "encrypt the new ring file with Ansible Vault (ANSIBLE_VAULT_PASSWORD_FILE)",
        )
    },
    locks=True,
)
STATUS = Operation("keys.status", status, {"batch": _BATCH})
ROTATE = Operation.destructive(
    "keys.rotate",
    rotate,
    batch=_BATCH,
    no_new_key=options.described(
        options.flag(), "move the values under the current active key, without adding a key"
    ),
)
RETIRE = Operation.destructive(
    "keys.retire",
    retire,
    key_id=options.described(
        options.key_id(), "the key id to remove, as keys.status prints it (16 hex digits)"
    ),
    batch=_BATCH,
    force=options.described(options.flag(), FORCE_HELP),
)
