"""`invoke test`: the linters and the test suite, as CI runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
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
# The docs site (mkdocs.yml): --strict fails on a broken link or anchor and on a page the
# nav leaves out. It is built into a temporary directory outside the tree, given last.
# Not --quiet: mkdocs counts strict-mode warnings only at the log level it shows.
DOCS_BUILD = ("mkdocs", "build", "--strict", "--site-dir")
DOCS_ENV = {"NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner about its successor
# Tests marked `integration` deploy and drive the real services, those marked `multihost`
# deploy them onto the lab's container hosts; the rest need none.
FAST_PYTEST = ("pytest", "-m", "not integration and not multihost")


def steps(*, lint_only: bool, fast: bool, site_dir: str) -> list[list[str]]:
    chosen = [*LINTERS, (*DOCS_BUILD, site_dir)]
    if not lint_only:
        chosen.append(FAST_PYTEST if fast else ("pytest",))
    return [[str(BIN_DIR / tool), *args] for tool, *args in chosen]


def run_checks(context: Context, *, lint_only: bool, fast: bool) -> Outcome:
    started = time.monotonic()
    done: list[str] = []
    env = {**os.environ, **DOCS_ENV}
    with tempfile.TemporaryDirectory(prefix="memops-site-") as site_dir:
        for argv in steps(lint_only=lint_only, fast=fast, site_dir=site_dir):
            shown = " ".join([Path(argv[0]).name, *argv[1:]])
            print(f"$ {shown}", flush=True)  # progress: the tools' own output follows
            code = subprocess.run(argv, cwd=PROJECT_DIR, env=env, check=False).returncode
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
            options.flag(),
            "skip the tests marked integration and multihost (they deploy the real services)",
        ),
    },
    inventory=InventoryUse.OPTIONAL,
)
