"""The one-line error every memops command leaves on stderr: ``memops COMMAND: message``."""

from __future__ import annotations

import sys


def one_line(text: str) -> str:
    """Fold a multi-line message (libpq's, Ansible's) into one line."""
    return " ".join(text.split())


def error_line(command: str, message: str, *, secrets: tuple[str | None, ...] = ()) -> None:
    """Print ``memops COMMAND: message`` on stderr, with any of ``secrets`` masked."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "********")
    print(f"memops {command}: {one_line(message)}", file=sys.stderr, flush=True)
