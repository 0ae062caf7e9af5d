"""What every memops task shares: option help, the default inventory, and the call to the runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from inspect import Parameter, Signature
from typing import Any

from invoke import Context, Exit, task

from memops.errors import error_line
from memops.ops.options import flag_name, help_of, is_flag
from memops.ops.runner import Operation, run_operation

DEFAULT_INVENTORY = "local"
# Invoke configuration of the root collection: `memops.inventory` can be set in an
# invoke.yaml, or as INVOKE_MEMOPS_INVENTORY; MEMOPS_INVENTORY wins over both.
CONFIG_DEFAULTS: dict[str, Any] = {"memops": {"inventory": DEFAULT_INVENTORY}}
INVENTORY_ENV = "MEMOPS_INVENTORY"
HELP_FLAGS = ("--help", "-h")
# Task arguments that are not options of the operation.
RUNNER_ARGUMENTS = ("c", "inventory", "json")

# Help for the options several tasks share; a task adds its own with `help=`.
COMMON_HELP = {
    "inventory": (
        f"inventory name under inventory/ or a path (default: ${INVENTORY_ENV}, "
        f"else the memops.inventory setting, else {DEFAULT_INVENTORY})"
    ),
    "json": "print the result as one JSON document (progress output goes to the log only)",
    "dry_run": "show what would change, change nothing",
    "yes": "do it without asking (required when not interactive)",
}


def operation_task(
    operation: Operation,
    doc: str,
    *,
    positional: Sequence[str] = (),
    runner_options: bool | Sequence[str] = True,
    **kwargs: Any,
) -> Any:
    """The Invoke task that runs ``operation``: its parameters are the operation's options.

    The signature is made from the operation's declaration, so a task cannot drift from
    it: ``positional`` options come first (``invoke rebuild.hard acme``), a flag defaults
    to False and any other option to None, old option names the operation still accepts
    follow, then ``inventory`` and ``json`` unless ``runner_options`` is False (or names
    the ones the task takes: the lab's tasks take ``json`` only). Each
    option's help comes from its declaration. Calling the task hands the arguments to
    the runner.
    """
    others = [n for n in operation.options if n not in positional]
    if isinstance(runner_options, bool):
        runner: Sequence[str] = ("inventory", "json") if runner_options else ()
    else:
        runner = tuple(runner_options)
    signature = Signature(
        [
            Parameter("c", Parameter.POSITIONAL_OR_KEYWORD, annotation=Context),
            *(_parameter(n) for n in positional),
            *(_parameter(n, False if is_flag(operation.options[n]) else None) for n in others),
            *(_parameter(old, None) for old in operation.renamed),
            *(_parameter(n, False if n == "json" else None) for n in runner),
        ]
    )
    names = [*positional, *others]
    extra = [*operation.renamed, *runner]
    texts = {n: COMMON_HELP[n] for n in [*names, *runner] if n in COMMON_HELP}
    texts |= {n: help_of(parse) for n, parse in operation.options.items() if help_of(parse)}
    texts |= {
        old: f"deprecated spelling of {flag_name(new)} (removed in the next release)"
        for old, new in operation.renamed.items()
    }
    missing = [n for n in [*names, *extra] if n not in texts]
    if missing:
        raise TypeError(f"{operation.name}: no help text for {', '.join(missing)}")

    def body(c: Context, *args: Any, **options: Any) -> None:
        bound = signature.bind(c, *args, **options)
        bound.apply_defaults()
        run(c, operation, bound.arguments)

    body.__signature__ = signature  # type: ignore[attr-defined]  # what Invoke reads
    body.__name__ = body.__qualname__ = kwargs.pop("name", operation.name.rpartition(".")[2])
    body.__doc__ = doc
    body.operation = operation  # type: ignore[attr-defined]  # for the contract test
    # No automatic one-letter flags: `-r` must not be `--drop-old` by accident of the
    # alphabet; the long names are the contract scheduled jobs type.
    return task(help=texts, **{"auto_shortflags": False, **kwargs})(body)


def _parameter(name: str, default: Any = Parameter.empty) -> Parameter:
    return Parameter(name, Parameter.POSITIONAL_OR_KEYWORD, default=default)


def take_renamed(operation: Operation, raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The options under their names now, and a deprecation note per old name used."""
    options, notes = dict(raw), []
    for old, new in operation.renamed.items():
        value = options.pop(old, None)
        if value in (None, "", False):
            continue
        notes.append(f"{flag_name(old)} is deprecated: use {flag_name(new)}")
        if options.get(new) in (None, "", False):
            options[new] = value
        elif options[new] != value:
            notes.append(f"{flag_name(old)} ignored: {flag_name(new)} is given too")
    return options, notes


def inventory_spec(c: Context, given: str | None) -> tuple[str, bool]:
    """The inventory to use and whether the user named it."""
    if given:
        return given, True
    from_env = os.environ.get(INVENTORY_ENV)
    if from_env:
        return from_env, True
    configured = c.config.get("memops", {}).get("inventory") or DEFAULT_INVENTORY
    return str(configured), False


def run(c: Context, operation: Operation, arguments: Mapping[str, Any]) -> None:
    """Run ``operation`` with a task's bound arguments; a non-zero outcome exits.

    Besides the Context, ``inventory`` and ``json`` are the runner's; every other argument
    is an option of the operation, or an old spelling of one (``take_renamed``).
    ``invoke TASK --help`` reaches here when TASK takes a positional argument (Invoke hands
    it ``--help`` as that argument's value): it prints the task's help instead.
    """
    raw = {name: value for name, value in arguments.items() if name not in RUNNER_ARGUMENTS}
    raw, notes = take_renamed(operation, raw)
    if any(value in HELP_FLAGS for value in raw.values()):
        raise Exit(code=subprocess.call([sys.argv[0], "--help", operation.name]))
    for note in notes:
        error_line(operation.name, note)
    spec, given = inventory_spec(c, arguments.get("inventory"))
    json = bool(arguments.get("json"))
    code = run_operation(operation, raw, inventory_spec=spec, inventory_given=given, as_json=json)
    if code:
        raise Exit(code=code)
