"""The one error vocabulary: every memops error is refused (exit 2) or failed (exit 1)."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path
from typing import Any

import pytest
import redis

import memops
from memops import paths
from memops.audit import AUDIT_FILE
from memops.errors import BadInput, Failed, MemopsError, Refused, client_failure, store_failure
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED
from memops.ops.runner import Operation, Outcome, run_operation


def _memops_modules() -> list[Any]:
    found = []
    for info in pkgutil.walk_packages(memops.__path__, "memops."):
        if info.name.startswith("memops.testing") or info.name.endswith("__main__"):
            continue
        found.append(importlib.import_module(info.name))
    return found


def test_every_public_error_of_memops_is_refused_or_failed():
    strays = sorted(
        f"{module.__name__}.{name}"
        for module in _memops_modules()
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, Exception)
        and value.__module__ == module.__name__
        and not name.startswith("_")
        and value is not MemopsError
        and not issubclass(value, (Refused, Failed))
    )
    assert strays == []


def test_domain_errors_keep_their_kind():
    from memops.backup.artifacts import BackupError, RestoreRefused, SetNotFound
    from memops.backup.manifest import ManifestError
    from memops.ops.confirm import NotConfirmed
    from memops.ops.options import OptionError

    for refused in (SetNotFound, RestoreRefused, ManifestError, NotConfirmed, OptionError):
        assert refused("x").exit_code == EXIT_BAD_INPUT, refused
    assert BackupError("x").exit_code == EXIT_FAILED
    assert issubclass(SetNotFound, BackupError)  # `except BackupError` still catches it
    assert OptionError("x").result == "bad-input" and NotConfirmed("x").result == "not-confirmed"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (redis.ConnectionError("Error 111 connecting\nmore"), "redis: Error 111 connecting"),
        (ConnectionRefusedError(111, "Connection refused"), "[Errno 111] Connection refused"),
    ],
)
def test_client_errors_become_one_failed_line(error: Exception, expected: str):
    failure = client_failure(error)
    assert isinstance(failure, Failed) and str(failure) == expected
    assert str(client_failure(error, "postgresql")).startswith("postgresql: ")


def test_anything_else_is_not_a_client_error():
    assert client_failure(KeyError("oops")) is None


@pytest.mark.parametrize(
    ("raised", "code", "result"),
    [
        (Refused("not deployed"), EXIT_BAD_INPUT, "refused"),
        (BadInput("--tier: bogus"), EXIT_BAD_INPUT, "bad-input"),
        (Failed("redis: gone"), EXIT_FAILED, "failed"),
        (redis.ConnectionError("gone"), EXIT_FAILED, "failed"),
    ],
)
def test_the_runner_maps_each_kind_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raised: Exception,
    code: int,
    result: str,
):
    monkeypatch.delenv("MEMOPS_STATE_DIR", raising=False)
    monkeypatch.setattr(paths, "STATE_ROOT", tmp_path / "state")
    inventory = tmp_path / "inv"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text("---\nall:\n  hosts:\n    localhost:\n")

    def body(context: Any) -> Outcome:
        raise raised

    assert (
        run_operation(
            Operation("sample.err", body), {}, inventory_spec=str(inventory), as_json=True
        )
        == code
    )
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["ok"] is False and document["error"] == captured.err.split(": ", 1)[1].strip()
    assert captured.err.count("\n") == 1
    assert isinstance(raised, MemopsError) or document["error"].startswith("redis: ")
    audit = (paths.STATE_ROOT / "inv" / AUDIT_FILE).read_text().splitlines()
    assert json.loads(audit[-1])["result"] == result


def test_a_store_failure_names_its_tier_whatever_raised_it():
    import psycopg

    assert str(store_failure(psycopg.OperationalError("server closed\nDETAIL"), "postgresql")) == (
        "postgresql: server closed"
    )
    assert str(store_failure(KeyError("k"), "qdrant")) == "qdrant: 'k'"
