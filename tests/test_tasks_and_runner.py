"""The task tree and the operation runner: structure, exit codes, audit lines, bad input."""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from invoke import Config, Context
from root_tasks import root_collection

from memops import paths
from memops.audit import AUDIT_FILE
from memops.backup.metrics import SKIPPED_MEMORY_FILE
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.locking import action_lock
from memops.ops import options
from memops.ops.runner import InventoryUse, Operation, Outcome, run_operation
from memops.tasks.common import CONFIG_DEFAULTS, inventory_spec

INVOKE = str(Path(sys.executable).with_name("invoke"))
ROOT_TASKS = {"up", "deploy", "health", "render", "remove", "switchover", "test"}
NAMESPACES = {
    "backup": {"create", "list", "verify", "restore", "prune", "drill"},
    "memory": {"rejudge", "chain", "anonymize"},
    "rebuild": {"validate", "soft", "hard", "reindex", "quarantine", "release"},
    "validate": {"recall"},
    "rollout": {"gate"},
    "keys": {"init", "status", "rotate", "retire"},
    "lab": {"up", "status", "down"},
}


# --- the collection ------------------------------------------------------------------


def test_root_collection_has_the_root_tasks_and_their_defaults() -> None:
    ns = root_collection()
    assert set(ns.tasks) == ROOT_TASKS
    assert {name: set(ns.collections[name].tasks) for name in ns.collections} == NAMESPACES
    assert ns.configuration()["memops"] == CONFIG_DEFAULTS["memops"]
    for name in ROOT_TASKS:
        task = ns[name]
        parameters = list(inspect.signature(task.body).parameters)[1:]
        assert parameters, name
        assert set(task.help) == set(parameters), f"{name}: every option has help"
        assert task.body.__doc__, f"{name} has no docstring"


def test_task_bodies_are_thin() -> None:
    """A task parses nothing itself: its body is at most a few statements."""
    for name in root_collection().task_names:
        body = root_collection()[name].body
        tree = ast.parse(inspect.getsource(body).lstrip())
        function = tree.body[0]
        assert isinstance(function, ast.FunctionDef)
        statements = [s for s in function.body if not isinstance(s, ast.Expr)]  # not docstring
        assert len(statements) <= 3, f"{name}: {len(statements)} statements"


def test_invoke_lists_and_completes_the_tasks() -> None:
    listed = _invoke("--list", "--list-format=flat")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= ROOT_TASKS
    completed = _invoke("--complete", "--", "invoke", "he")
    assert completed.returncode == 0
    assert "health" in completed.stdout.split()
    flags = _invoke("--complete", "--", "invoke", "health", "--")
    assert {"--inventory", "--json", "--timeout", "--retries"} <= set(flags.stdout.split())


def test_default_inventory_comes_from_config_then_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MEMOPS_INVENTORY", raising=False)
    context = Context(Config(overrides={"memops": {"inventory": "staging"}}))
    assert inventory_spec(context, None) == ("staging", False)
    assert inventory_spec(context, "production") == ("production", True)
    monkeypatch.setenv("MEMOPS_INVENTORY", "elsewhere")
    assert inventory_spec(context, None) == ("elsewhere", True)


# --- the runner, through a small operation ---------------------------------------------


@pytest.fixture
def inventories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Two inventories (paths) and a private state root for their state directories."""
    monkeypatch.delenv("MEMOPS_STATE_DIR", raising=False)
    monkeypatch.delenv("MEMOPS_LOCK_WAIT", raising=False)
    monkeypatch.setattr(paths, "STATE_ROOT", tmp_path / "state")
    made = {}
    for name in ("alpha", "beta"):
        directory = tmp_path / "inventories" / name
        directory.mkdir(parents=True)
        (directory / "hosts.yml").write_text("---\nall:\n  hosts:\n    localhost:\n")
        made[name] = directory
    return made


def _audit(name: str) -> list[dict[str, Any]]:
    path = paths.STATE_ROOT / name / AUDIT_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _operation(exit_code: int, *, locks: bool = False, seen: list[Any] | None = None) -> Operation:
    def body(context: Any, *, count: int) -> Outcome:
        if seen is not None:
            seen.append(count)
        return Outcome(exit_code, {"ok": exit_code == 0, "count": count}, lines=[f"n={count}"])

    return Operation(
        "sample.act",
        body,
        options={"count": options.integer(default=1, minimum=1, maximum=5)},
        locks=locks,
    )


@pytest.mark.parametrize(
    ("exit_code", "result"), [(EXIT_OK, "ok"), (EXIT_FAILED, "failed")], ids=["ok", "failed"]
)
def test_outcome_exit_code_and_one_audit_line_in_the_inventory_used(
    inventories: dict[str, Path], capsys: pytest.CaptureFixture[str], exit_code: int, result: str
) -> None:
    code = run_operation(
        _operation(exit_code), {"count": "3"}, inventory_spec=str(inventories["beta"]), as_json=True
    )
    assert code == exit_code
    assert json.loads(capsys.readouterr().out) == {"ok": exit_code == 0, "count": 3}
    [line] = _audit("beta")
    assert line["action"] == "sample.act"
    assert line["result"] == result
    assert line["arguments"] == {"inventory": "beta", "count": "3"}
    assert _audit("alpha") == []


def test_bad_option_is_refused_before_the_operation_runs(
    inventories: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Any] = []
    code = run_operation(
        _operation(EXIT_OK, seen=seen), {"count": "9"}, inventory_spec=str(inventories["alpha"])
    )
    assert code == EXIT_BAD_INPUT
    assert seen == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["memops sample.act: --count: expected a whole number from 1 to 5, got '9'"]
    [line] = _audit("alpha")
    assert line["result"] == "bad-input"


def test_unknown_inventory_is_bad_input_and_writes_nowhere(
    inventories: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_operation(_operation(EXIT_OK), {"count": "1"}, inventory_spec="no-such-inventory")
    assert code == EXIT_BAD_INPUT
    assert "inventory 'no-such-inventory' not found" in capsys.readouterr().err
    assert not paths.STATE_ROOT.exists()


def test_optional_inventory_runs_without_one_unless_it_was_named(
    inventories: dict[str, Path],
) -> None:
    seen: list[Any] = []
    operation = Operation(
        "sample.free", lambda context: seen.append(context.inventory) or Outcome(0, {})
    )
    optional = Operation(operation.name, operation.body, inventory=InventoryUse.OPTIONAL)
    assert run_operation(optional, {}, inventory_spec="missing", inventory_given=False) == 0
    assert seen == [None]
    assert run_operation(optional, {}, inventory_spec="missing", inventory_given=True) == 2
    assert seen == [None]


def test_busy_lock_refuses_and_names_the_holder(
    inventories: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Any] = []
    state_dir = paths.STATE_ROOT / "alpha"
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with action_lock(state_dir, "backup.restore"):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        # flock locks are per open file: a second open in this process still conflicts
        code = run_operation(
            _operation(EXIT_OK, locks=True, seen=seen),
            {"count": "1"},
            inventory_spec=str(inventories["alpha"]),
        )
    finally:
        release.set()
        holder.join()
    assert code == EXIT_BAD_INPUT
    assert seen == []
    err = capsys.readouterr().err
    assert f"backup.restore pid {os.getpid()}" in err
    assert err.count("\n") == 1
    assert "set MEMOPS_LOCK_WAIT=SECONDS to wait for it" in err
    [line] = _audit("alpha")
    assert line["result"] == "lock-busy"
    assert line["details"]["holder"] == f"backup.restore pid {os.getpid()}"
    assert not (state_dir / SKIPPED_MEMORY_FILE).exists()  # a person was refused: no skip


@contextlib.contextmanager
def _held(state_dir: Path, action: str, *, seconds: float = 10) -> Iterator[None]:
    """``action`` holds the stack lock in a thread (its own open file: flock conflicts)
    until the block ends or ``seconds`` pass."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with action_lock(state_dir, action):
            holding.set()
            release.wait(seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        yield
    finally:
        release.set()
        holder.join()


@pytest.mark.parametrize("value", ["ten", "-5", "1.5", "86401", "\u00b2"])
def test_a_bad_lock_wait_is_bad_input(
    inventories: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    value: str,
) -> None:
    monkeypatch.setenv("MEMOPS_LOCK_WAIT", value)
    seen: list[Any] = []
    spec = str(inventories["alpha"])
    code = run_operation(
        _operation(EXIT_OK, locks=True, seen=seen), {"count": "1"}, inventory_spec=spec
    )
    assert code == EXIT_BAD_INPUT and seen == []
    assert capsys.readouterr().err.splitlines() == [
        "memops sample.act: MEMOPS_LOCK_WAIT: expected a whole number of seconds from 0 to "
        f"86400, got '{value}'"
    ]
    assert [line["result"] for line in _audit("alpha")] == ["bad-input"]
    # an operation that takes no lock does not read it
    assert run_operation(_operation(EXIT_OK, seen=seen), {"count": "2"}, inventory_spec=spec) == 0
    assert seen == [2]


def test_a_run_asked_to_wait_says_so_once_then_acts_when_the_lock_frees(
    inventories: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMOPS_LOCK_WAIT", "30")
    state_dir = paths.STATE_ROOT / "alpha"
    seen: list[Any] = []
    operation = _operation(EXIT_OK, locks=True, seen=seen)
    with _held(state_dir, "backup.drill", seconds=1.0):
        code = run_operation(operation, {"count": "4"}, inventory_spec=str(inventories["alpha"]))
    assert code == EXIT_OK and seen == [4]
    holder = f"backup.drill pid {os.getpid()}"
    assert capsys.readouterr().err.splitlines() == [
        f"memops sample.act: the stack lock is held by {holder}; waiting up to 30 s for it"
    ]
    started, done = _audit("alpha")
    assert (started["result"], done["result"]) == ("started", "ok")
    for line in (started, done):
        assert line["details"]["lock_holder"] == holder
        assert 0.5 <= line["details"]["lock_waited_s"] < 30


def test_a_run_asked_not_to_wait_is_refused_at_once_and_counted_as_skipped(
    inventories: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MEMOPS_LOCK_WAIT=0 (a schedule that will not wait): refused at once like a person,
    but it was asked to run unattended, so the skip is recorded for the alert."""
    monkeypatch.setenv("MEMOPS_LOCK_WAIT", "0")
    state_dir = paths.STATE_ROOT / "alpha"
    seen: list[Any] = []
    with _held(state_dir, "rebuild.hard"):
        code = run_operation(
            _operation(EXIT_OK, locks=True, seen=seen),
            {"count": "1"},
            inventory_spec=str(inventories["alpha"]),
            as_json=True,
        )
    assert code == EXIT_BAD_INPUT and seen == []
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "waiting" not in captured.err
    document = json.loads(captured.out)
    assert document["ok"] is False
    assert document["lock"]["holder"] == f"rebuild.hard pid {os.getpid()}"
    skipped = json.loads((state_dir / SKIPPED_MEMORY_FILE).read_text())
    assert skipped["sample.act"]["last_run_skipped"] == 1
    assert skipped["sample.act"]["skipped_total"] == 1


def test_a_crashing_operation_is_one_line_and_audited(
    inventories: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(context: Any) -> Outcome:
        raise KeyError("oops")

    code = run_operation(
        Operation("sample.bug", broken), {}, inventory_spec=str(inventories["beta"])
    )
    assert code == EXIT_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memops sample.bug: internal error: KeyError")
    assert _audit("beta")[0]["result"] == "error"


# --- option parsers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parser", "raw", "message"),
    [
        (options.number(default=2, greater_than=0), "-1", "a number greater than 0"),
        (options.number(default=2, greater_than=0), "nan", "a number greater than 0"),
        (options.number(default=2, greater_than=0), "abc", "a number greater than 0"),
        (options.integer(default=1, maximum=10), "abc", "a whole number from 0 to 10"),
        (options.integer(default=1, maximum=10), "1.5", "a whole number from 0 to 10"),
        (options.integer(default=1, maximum=10), "11", "a whole number from 0 to 10"),
        (options.choices(lambda: {"redis", "qdrant"}, many=True), "redis,bogus", "'bogus'"),
        (options.choices(lambda: {"redis"}, many=True), "redis,,", "an empty item"),
        (options.text(forbid="/"), "a/b", "must not contain '/'"),
        (options.flag(), "yes", "no value"),
    ],
)
def test_each_kind_of_mistake_names_the_option(parser: Any, raw: str, message: str) -> None:
    with pytest.raises(options.OptionError, match=r"^--the-option: ") as caught:
        parser("the_option", raw)
    assert message in str(caught.value)


def test_parsers_give_defaults_and_values() -> None:
    assert options.number(default=2.0, greater_than=0)("t", None) == 2.0
    assert options.number(default=2.0, greater_than=0)("t", "0.5") == 0.5
    assert options.integer(default=1)("r", "0") == 0
    assert options.choices(lambda: {"a", "b"}, many=True)("tags", "b,a,b") == ("b", "a")
    assert options.choices(lambda: {"a"}, many=True)("tags", None) == ()


# --- the real tasks, as users type them --------------------------------------------------


def _invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INVOKE, *args],
        cwd=paths.PROJECT_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("health", "--timeout", "-1"), "--timeout: expected a number greater than 0"),
        (("health", "--retries", "abc"), "--retries: expected a whole number from 0 to 10"),
        (("deploy", "--tags", "bogus"), "--tags: unknown 'bogus'; known: "),
        (("render", "--profile", "../x"), "--profile: must not contain '/'"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_touch_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text('{"health_state": "healthy"}\n')
    run = _invoke(*args, "--inventory", "local", env={"MEMOPS_STATE_DIR": str(state)})
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.count("\n") == 1 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert (state / "state.json").read_text() == '{"health_state": "healthy"}\n'
    assert not (state / "runtime-events.jsonl").exists()
    assert not (state / "logs").exists(), "ansible must not have run"
    [line] = [json.loads(text) for text in (state / AUDIT_FILE).read_text().splitlines()]
    assert line["result"] == "bad-input"


def test_deploy_tags_include_every_play_tag() -> None:
    from memops.deploy.playbook_tags import known_tags

    assert {"redis", "postgresql", "qdrant", "monitoring", "always"} <= known_tags("deploy")


def test_every_integration_module_is_marked() -> None:
    """`pytest -m "not integration"` must never start a deploy."""
    for module in sorted((paths.PROJECT_DIR / "tests" / "integration").glob("test_*.py")):
        assert "\npytestmark = pytest.mark.integration\n" in module.read_text(), module.name


def test_mitogen_is_the_default_strategy_and_can_be_switched_off() -> None:
    from memops.deploy.playbook import mitogen_settings

    settings = mitogen_settings({})
    assert settings["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(settings["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    assert mitogen_settings({"MEMOPS_MITOGEN": "0"}) == {}


def test_no_task_option_has_a_one_letter_alias() -> None:
    """`-r` must not mean `--drop-old` by accident of the alphabet: long names only."""
    collection = root_collection()
    for name in collection.task_names:
        for argument in collection[name].get_arguments():
            short = [n for n in argument.names if len(n) == 1]
            assert not short, f"{name}: --{argument.name} has the alias -{short[0]}"


@pytest.mark.parametrize(
    "argv",
    [
        ["backup.restore", "--help"],
        ["backup.verify", "-h"],
        ["rebuild.hard", "--help"],
        ["rebuild.quarantine", "--help"],
        ["keys.retire", "--help"],
        ["memory.chain", "--help"],
    ],
)
def test_help_after_a_task_with_a_positional_argument_prints_its_help(argv: list[str]) -> None:
    invoke = Path(sys.executable).with_name("invoke")
    run = subprocess.run(
        [str(invoke), *argv], cwd=paths.PROJECT_DIR, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Usage:") and f"{argv[0]} [--options]" in run.stdout
    assert run.stderr == ""
