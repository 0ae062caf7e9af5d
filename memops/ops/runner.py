"""The one way every memops task runs: check, lock, act, audit, print, exit.

A task hands its raw options to ``run_operation``. The runner resolves the
inventory once, checks every option with the operation's parsers (bad input is
one line, exit 2, nothing touched), takes the stack lock when the operation
changes the stack, calls the operation, appends exactly one audit line to that
inventory's state directory, prints the human summary or the ``--json``
document, and returns the exit code. Operations never print; they return an
``Outcome``.

A held lock refuses the operation at once, unless ``MEMOPS_LOCK_WAIT`` (seconds)
asks it to wait, as the scheduled jobs do: it says once on stderr whom it waits
for, and a run that gives up is refused naming the holder, audited as
``lock-busy`` and counted in the skipped-run metrics (``memops.backup.metrics``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from memops.audit import append_audit
from memops.backup.metrics import SKIPPED_MEMORY_FILE, record_lock_taken, record_skipped
from memops.deploy.inventory import Inventory, InventoryError, resolve_inventory
from memops.deploy.targets import TARGETS_FILE, TargetsError, load_targets
from memops.errors import MemopsError, client_failure, error_line
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.locking import WAIT_ENV, LockBusyError, action_lock
from memops.model import with_namespace_keys
from memops.ops import inflight
from memops.ops.options import OptionError, Parser, flag
from memops.progress import meter_for, reporting

MAX_LOCK_WAIT_S = 86400


class InventoryUse(Enum):
    REQUIRED = "required"  # the operation acts on an inventory's stack
    OPTIONAL = "optional"  # it does not need one; its audit line goes there when one resolves


@dataclass(frozen=True)
class Outcome:
    """What an operation did.

    ``document`` is what ``--json`` prints; ``lines`` the human summary; ``error``
    the one stderr line when it failed; ``notes`` extra stderr lines that do not
    change the verdict; ``result`` and ``audit`` go into the audit line.
    """

    exit_code: int
    document: Mapping[str, Any]
    lines: Sequence[str] = ()
    error: str = ""
    notes: Sequence[str] = ()
    result: str = ""
    audit: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    @property
    def audit_result(self) -> str:
        return self.result or ("ok" if self.ok else "failed")

    def to_dict(self) -> dict[str, Any]:
        """All of it, for a process that runs the operation for another (see memops.ops.remote)."""
        return {
            "exit_code": self.exit_code,
            "document": dict(self.document),
            "lines": list(self.lines),
            "error": self.error,
            "notes": list(self.notes),
            "result": self.result,
            "audit": dict(self.audit),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        return cls(
            int(data["exit_code"]),
            dict(data.get("document") or {}),
            lines=tuple(data.get("lines") or ()),
            error=str(data.get("error") or ""),
            notes=tuple(data.get("notes") or ()),
            result=str(data.get("result") or ""),
            audit=dict(data.get("audit") or {}),
        )

    @classmethod
    def refused(
        cls, message: str, *, result: str = "bad-input", code: int = EXIT_BAD_INPUT, **document: Any
    ) -> Outcome:
        """Nothing was touched; ``document`` adds facts to the --json output."""
        body = {**document, "ok": False, "error": message}
        return cls(code, body, error=message, result=result)

    @classmethod
    def failed(cls, message: str, **document: Any) -> Outcome:
        """The operation ran and failed (exit 1)."""
        return cls.refused(message, result="failed", code=EXIT_FAILED, **document)

    @classmethod
    def from_error(cls, error: MemopsError, **document: Any) -> Outcome:
        """A refusal (exit 2) or a failure (exit 1), as the error's kind says."""
        return cls.refused(str(error), result=error.result, code=error.exit_code, **document)


@dataclass(frozen=True)
class Context:
    """What an operation gets besides its options."""

    inventory: Inventory | None
    echo: bool  # a person is watching: stream progress (Ansible's output) to stderr

    def require_inventory(self) -> Inventory:
        if self.inventory is None:  # only for InventoryUse.REQUIRED, which the runner ensures
            raise RuntimeError("this operation needs an inventory")
        return self.inventory


@dataclass(frozen=True)
class Operation:
    """A task's action: its name as users type it, its options, and whether it locks."""

    name: str
    body: Callable[..., Outcome]
    options: Mapping[str, Parser] = field(default_factory=dict)
    locks: bool = False  # destructive or deploying: holds the stack lock while it runs
    inventory: InventoryUse = InventoryUse.REQUIRED
    # The playbook that runs it on the inventory's backup host, when one is set
    # (memops.ops.remote); "" runs it here.
    playbook: str = ""
    # Old option names still accepted for one release: old name -> the option's name now.
    renamed: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def destructive(
        cls,
        name: str,
        body: Callable[..., Outcome],
        *,
        playbook: str = "",
        renamed: Mapping[str, str] | None = None,
        **options: Parser,
    ) -> Operation:
        """An operation that changes data: it takes --dry-run and --yes, and holds the lock."""
        confirmation = {"dry_run": flag(), "yes": flag()}
        return cls(
            name,
            body,
            {**options, **confirmation},
            locks=True,
            playbook=playbook,
            renamed=renamed or {},
        )

    def parse(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        unexpected = sorted(set(raw) - set(self.options))
        if unexpected:  # a task passed an option the operation does not declare: a bug
            raise RuntimeError(f"{self.name}: undeclared options {unexpected}")
        return {name: parse(name, raw.get(name)) for name, parse in self.options.items()}


def run_operation(
    operation: Operation, raw: Mapping[str, Any], *, as_json: bool = False, **inventory: Any
) -> int:
    """Run ``operation`` with the raw task options; print what it did; return the exit code.

    ``inventory``: ``inventory_spec`` and ``inventory_given``, as execute_operation takes them.
    """
    outcome = execute_operation(operation, raw, echo=not as_json, **inventory)
    _print(operation.name, outcome, as_json)
    return outcome.exit_code


def execute_operation(
    operation: Operation,
    raw: Mapping[str, Any],
    *,
    inventory_spec: str,
    inventory_given: bool = True,
    echo: bool = True,
) -> Outcome:
    """Check, lock, act and audit; the Outcome, not yet printed."""
    inventory, parsed = _prepare(operation, raw, inventory_spec, inventory_given)
    if isinstance(parsed, Outcome):
        outcome = parsed
    else:
        context = Context(inventory=inventory, echo=echo)
        outcome = _act(operation, context, parsed, raw)
    if inventory is not None:
        arguments = {"inventory": inventory.name, **raw}
        append_audit(
            inventory.state_dir, operation.name, arguments, outcome.audit_result, outcome.audit
        )
    return outcome


def _prepare(
    operation: Operation, raw: Mapping[str, Any], spec: str, given: bool
) -> tuple[Inventory | None, dict[str, Any] | Outcome]:
    """Resolve the inventory and parse the options once; an Outcome here means: refused."""
    inventory = None
    try:
        inventory = resolve_inventory(spec)
    except InventoryError as exc:
        if operation.inventory is InventoryUse.REQUIRED or given:
            return None, Outcome.refused(str(exc))
    try:
        return inventory, operation.parse(raw)
    except OptionError as exc:
        return inventory, Outcome.from_error(exc)


def _act(
    operation: Operation, context: Context, options: dict[str, Any], raw: Mapping[str, Any]
) -> Outcome:
    def body() -> Outcome:
        if operation.playbook and context.inventory is not None:
            from memops.ops import remote  # it builds on this module

            host = remote.operation_host(context.inventory)
            if host is not None:
                return remote.run_on_host(operation, context, raw, host)
        return operation.body(context, **options)

    wait_s = None
    if operation.locks:
        try:
            wait_s = lock_wait()
        except OptionError as exc:
            return Outcome.from_error(exc)
    try:
        with reporting(meter_for(watching=context.echo)):
            return _locked(operation, context, raw, body, wait_s) if operation.locks else body()
    except LockBusyError as exc:
        return _lock_busy(operation, context, exc, wait_s)
    except MemopsError as exc:
        return Outcome.from_error(exc)
    except Exception as exc:
        if (failure := client_failure(exc)) is not None:
            return Outcome.from_error(failure)
        # A bug: still one line, one audit record, exit 1
        if os.environ.get("MEMOPS_DEBUG"):
            traceback.print_exc()
        message = f"internal error: {type(exc).__name__}: {exc} (MEMOPS_DEBUG=1 shows where)"
        return Outcome.refused(message, result="error", code=EXIT_FAILED)


def lock_wait() -> float | None:
    """Seconds to wait for a held stack lock (``MEMOPS_LOCK_WAIT``); None: not asked to wait."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_LOCK_WAIT_S:
        raise OptionError(
            f"{WAIT_ENV}: expected a whole number of seconds from 0 to {MAX_LOCK_WAIT_S}, "
            f"got {raw!r}"
        )
    return float(raw)


def _locked(
    operation: Operation,
    context: Context,
    raw: Mapping[str, Any],
    body: Callable[[], Outcome],
    wait_s: float | None = None,
) -> Outcome:
    """``body`` under the stack lock, recorded as started (audit line, inflight.json) first.

    With ``wait_s`` it waits that long for a held lock, saying so once. A note names the
    previous holder when it never finished, with what it recorded.
    """
    inventory = context.require_inventory()
    state_dir = inventory.state_dir
    waited_for: list[str] = []

    def waiting(holder: str) -> None:
        waited_for.append(holder)
        error_line(
            operation.name,
            f"the stack lock is held by {holder}; waiting up to {wait_s or 0:g} s for it",
        )

    with action_lock(state_dir, operation.name, wait_s=wait_s or 0, on_wait=waiting) as held:
        details = (
            {"lock_waited_s": round(held.waited_s, 1), "lock_holder": waited_for[0]}
            if waited_for
            else {}
        )
        if held.inherited:  # run for the holder (on its backup host): it records the action
            return body()
        died = inflight.left_behind(state_dir)
        arguments = {"inventory": inventory.name, **raw}
        inflight.begin(state_dir, operation.name, arguments)
        append_audit(state_dir, operation.name, arguments, "started", details)
        try:
            _clear_skipped(state_dir, operation.name)
            outcome = body()
        finally:
            inflight.end(state_dir)
    if details:
        outcome = replace(outcome, audit={**outcome.audit, **details})
    previous = inflight.describe(died) if died is not None else held.previous_unfinished or ""
    if previous:
        note = (
            f"the previous action, {previous}, did not finish: it was killed or its "
            "machine went down; check what it was doing"
        )
        outcome = replace(outcome, notes=(*outcome.notes, note))
    return outcome


def _lock_busy(
    operation: Operation, context: Context, exc: LockBusyError, wait_s: float | None
) -> Outcome:
    """Refused for a held lock; a run that was asked to wait (a scheduled one) and gave up
    is counted as skipped in the textfile metrics."""
    waited = {"holder": exc.holder, "waited_s": round(exc.waited_s, 1)}
    outcome = Outcome.refused(str(exc), result="lock-busy", lock=waited)
    outcome = replace(outcome, audit=waited)
    if wait_s is None or context.inventory is None:
        return outcome
    state_dir = context.inventory.state_dir
    textfile = _textfile_dir(state_dir)
    try:
        record_skipped(state_dir, textfile, task=operation.name)
    except OSError as error:
        note = f"could not publish the skipped run to {textfile}: {error}"
        return replace(outcome, notes=(*outcome.notes, note))
    return outcome


def _clear_skipped(state_dir: Path, task: str) -> None:
    """This run of ``task`` got the lock: its last skipped run is over (metrics); on a
    deployed stack its series exists from its first run on."""
    textfile = _textfile_dir(state_dir)
    if textfile is None and not (state_dir / SKIPPED_MEMORY_FILE).exists():
        return  # not deployed, and no run was ever skipped here: nothing to publish
    with contextlib.suppress(OSError):  # a metric must not stop the action
        record_lock_taken(state_dir, textfile, task=task)


def _textfile_dir(state_dir: Path) -> Path | None:
    """node_exporter's textfile directory as the last deploy recorded it (None: not deployed)."""
    if not (state_dir / TARGETS_FILE).exists():
        return None
    try:
        value = load_targets(state_dir).deployment.get("textfile_dir")
    except TargetsError:
        return None
    return Path(value) if isinstance(value, str) and value else None


def emit_json(document: Mapping[str, Any]) -> None:
    print(json.dumps(document, indent=2, sort_keys=True), flush=True)


def _print(command: str, outcome: Outcome, as_json: bool) -> None:
    try:
        if as_json:
            emit_json(with_namespace_keys(outcome.document))
        else:
            for line in outcome.lines:
                print(line)
            sys.stdout.flush()
    except BrokenPipeError:  # `… | head`: the reader left; the exit code still tells
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    for note in outcome.notes:
        error_line(command, note)
    if outcome.error:
        error_line(command, outcome.error)
