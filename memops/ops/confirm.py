"""Asking before a destructive step: `--yes`, or a person at a terminal who says yes."""

from __future__ import annotations

import sys

from memops.errors import Refused


class NotConfirmed(Refused):
    """The operator did not confirm (or could not be asked): nothing was done."""

    result = "not-confirmed"


def can_ask() -> bool:
    """A person is at a terminal to answer (not cron, not CI)."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def confirm(question: str, *, yes: bool) -> None:
    """Return when the step may go ahead; NotConfirmed otherwise.

    Without a terminal (cron, CI) only ``--yes`` confirms: a scheduled job must
    never hang on a prompt, nor go ahead because nobody answered.
    """
    if yes:
        return
    if not can_ask():
        raise NotConfirmed(f"{question}: not interactive, pass --yes to confirm")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in {"y", "yes"}:
        raise NotConfirmed(f"{question}: not confirmed, nothing done")
