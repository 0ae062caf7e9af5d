"""`invoke test`: the linters and the test suite, as CI runs them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from memops.exitcodes import EXIT_FAILED, EXIT_OK
from memops.ops import options
from memops.ops.runner import Context, InventoryUse, Operation, Outcome
from memops.paths import PROJECT_DIR

BIN_DIR = Path(sys.executable).parent
LINTERS = (
    ("ruff", "check", "."),
    ("ruff", "format", "--check", "."),
    ("yamllint", "-s", "."),
    ("ansible-lint", "--profile", "production"),
    ("mypy",),  # the product package, as configured in pyproject.toml
)
# Tests marked `integration` deploy and drive the real services; the rest need none.
FAST_PYTEST = ("pytest", "-m", "not integration")


def steps(*, lint_only: bool, fast: bool) -> list[list[str]]:
    chosen = list(LINTERS)
    if not lint_only:
        chosen.append(FAST_PYTEST if fast else ("pytest",))
    return [[str(BIN_DIR / tool), *args] for tool, *args in chosen]


def run_checks(context: Context, *, lint_only: bool, fast: bool) -> Outcome:
    started = time.monotonic()
    done: list[str] = []
    for argv in steps(lint_only=lint_only, fast=fast):
        shown = " ".join([Path(argv[0]).name, *argv[1:]])
        print(f"$ {shown}", flush=True)  # progress: the tools' own output follows
        code = subprocess.run(argv, cwd=PROJECT_DIR, check=False).returncode
        if code != 0:
            document = {"ok": False, "failed_step": shown, "returncode": code, "passed": done}
            return Outcome(EXIT_FAILED, document, error=f"`{shown}` exited with {code}")
        done.append(shown)
    seconds = round(time.monotonic() - started, 1)
    document = {"ok": True, "passed": done, "duration_s": seconds}
    return Outcome(EXIT_OK, document, lines=[f"test: {len(done)} step(s) passed in {seconds}s"])


TEST = Operation(
    "test",
    run_checks,
    {
        "lint_only": options.described(options.flag(), "run the linters but not pytest"),
        "fast": options.described(
            options.flag(), "skip the tests marked integration (they deploy the real services)"
        ),
    },
    inventory=InventoryUse.OPTIONAL,
)
