"""docs/runbooks/redis-memory-service.md, every step run as typed, on the deployed test stack.

Each section starts from the trouble it is about, made for real: section 1 stops the
test stack's Redis (the deploy of step 1a starts it again), section 4 changes memops'
password on the running server by hand (the deploy of step 4a restarts it from its
files) while namespace ``acme`` is quarantined in Redis (step 4b lifts it). The page's
lines must appear in each step's output in order (tests/runbook_steps.py); at the end
Redis is healthy, ``acme`` is released and every key is as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from integration_helpers import REDIS_PIDFILE, TEST_INVENTORY, DeployedStack, invoke, pidfile_daemon
from runbook_steps import check_output, parse, run_invoke

from memops.paths import PROJECT_DIR
from memops.quarantine import state as quarantine_state
from memops.rebuild.redis_clear import clear_namespace
from memops.testing import workload as wl

pytestmark = pytest.mark.integration

RUNBOOK = PROJECT_DIR / "docs" / "runbooks" / "redis-memory-service.md"
TENANT = "acme"
SECTIONS = [
    "1. Connection failures",
    "2. Memory pressure",
    "3. Slow performance",
    "4. Authentication failures",
]


def stop_redis(stack: DeployedStack) -> None:
    pidfile_daemon("stop", REDIS_PIDFILE)


def change_the_password_by_hand(stack: DeployedStack) -> None:
    store = stack.clients.redis()
    store.execute_command("ACL", "SETUSER", "default", "resetpass", ">changed-by-hand-at-3am")
    store.close()


TROUBLE: dict[str, Callable[[DeployedStack], None]] = {
    "1. Connection failures": stop_redis,
    "4. Authentication failures": change_the_password_by_hand,
}


@pytest.fixture
def keys(deployed_stack: DeployedStack) -> Iterator[dict[str, bytes]]:
    """``acme``'s session values (plain), quarantined in Redis; their DUMPs."""
    prefix = deployed_stack.targets.deployment["redis"]["key_prefix"]
    load = wl.generate(seed=6262, tenants=[TENANT, "acme:eu"], prefix=prefix, keyring=None)
    store = deployed_stack.clients.redis()
    clear_namespace(store, prefix, TENANT)
    wl.write_redis(store, load)
    written = [e.key for e in load.redis]
    dumps = {key: store.dump(key) for key in written}
    store.close()
    assert len([e for e in load.redis if e.tenant == TENANT]) == 6  # the page's count
    quarantined = invoke(
        "rebuild.quarantine", TENANT, "--tier", "redis", "--yes", "--inventory", TEST_INVENTORY
    )
    assert quarantined.returncode == 0, quarantined.stderr
    try:
        yield dumps
    finally:
        if TENANT in quarantine_state.load(deployed_stack.state_dir):
            invoke("rebuild.release", TENANT, "--yes", "--inventory", TEST_INVENTORY)
        if invoke("health", "--inventory", TEST_INVENTORY).returncode != 0:
            invoke("deploy", "--tags", "redis", "--inventory", TEST_INVENTORY)
        store = deployed_stack.clients.redis()
        store.unlink(*written)
        store.close()


def test_the_runbook_has_its_sections() -> None:
    sections = parse(RUNBOOK.read_text(), heading="## ")
    assert [s.title for s in sections] == SECTIONS
    assert all(s.steps for s in sections)


def test_every_step_prints_what_the_runbook_says(
    deployed_stack: DeployedStack, keys: dict[str, bytes]
) -> None:
    values: dict[str, str] = {}
    ran = 0
    for section in parse(RUNBOOK.read_text(), heading="## "):
        if trouble := TROUBLE.get(section.title):
            trouble(deployed_stack)
        for step in section.steps:
            lines = run_invoke(step, values, Path(TEST_INVENTORY), deployed_stack.state_dir)
            check_output(step, lines, values, captured=())
            ran += 1
    assert ran >= 11
    assert invoke("health", "--inventory", TEST_INVENTORY).returncode == 0
    assert TENANT not in quarantine_state.load(deployed_stack.state_dir)
    store = deployed_stack.clients.redis()
    assert {key: store.dump(key) for key in keys} == keys  # a stop and a restart lost nothing
    store.close()
