"""docs/restore-by-hand.md, followed as written: a whole set restored with standard tools only.

memops takes a whole set of the scratch stack (Redis with AOF on, as the role deploys it;
a PostgreSQL cluster; the Qdrant stand-in); then every tier is wrecked. The page's
``sh`` blocks run in bash, in order, the first one (the reader's values) replaced by this
test's own; memops itself is not called. Every tier must end byte for byte as the set
holds it: Redis values and absolute expiries after a restart (so from the new AOF),
PostgreSQL rows, Qdrant points.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from op_calls import call
from three_tiers import COLLECTIONS, PASSWORD, Stack

from memops.backup.redis.scratch import ScratchRedis
from memops.backup.scratch import free_port
from memops.deploy.targets_file import merge_targets
from memops.exitcodes import EXIT_OK
from memops.ops.backup import CREATE
from memops.paths import PROJECT_DIR
from memops.testing.pgcluster import ScratchCluster

try:  # the module name depends on pytest's import mode
    from test_fault_suite import snapshot
except ImportError:  # pragma: no cover
    from tests.test_fault_suite import snapshot

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
]

PAGE = PROJECT_DIR / "docs" / "restore-by-hand.md"


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)


@pytest.fixture(scope="module")
def tiers_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchRedis]:
    """three_tiers' server with AOF on, as the redis role deploys it."""
    server = ScratchRedis(
        free_port(),
        tmp_path_factory.mktemp("redis"),
        password=PASSWORD,
        config=["appendonly yes", "appendfsync everysec"],
    )
    server.start()
    yield server
    subprocess.run(  # the page restarts it as a daemon of its own
        ["redis-cli", "-p", str(server.port), "SHUTDOWN", "NOSAVE"],
        env={"REDISCLI_AUTH": PASSWORD, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=False,
    )
    server.stop()


def reader_values(stack: Stack, set_dir: Path, server: ScratchRedis, identity: Path) -> str:
    """What the page's first block sets, for this stack."""
    cluster: ScratchCluster = stack.cluster  # type: ignore[attr-defined]
    conf, port = shlex.quote(str(server.conf_path)), server.port
    return "\n".join(
        [
            f"SET={shlex.quote(str(set_dir))}",
            'PLAIN="$SET.plain"',
            f"AGE_IDENTITY={shlex.quote(str(identity))}",
            f"export PGHOST={shlex.quote(str(cluster.socket_dir))} PGPORT={cluster.port}",
            "export PGUSER=postgres",
            f"DB={shlex.quote(stack.pg.info.dbname)}",
            f"export REDISCLI_AUTH={shlex.quote(PASSWORD)}",
            f"REDIS_PORT={port}",
            f"REDIS_DIR={shlex.quote(str(server.data_dir))}",
            f"redis_stop() {{ redis-cli -p {port} SHUTDOWN >/dev/null || true;"
            f" while redis-cli -p {port} PING >/dev/null 2>&1; do sleep 0.1; done; }}",
            f"redis_start() {{ redis-server {conf} --daemonize yes; }}",
            f"redis_start_without_aof() {{ redis-server {conf} --appendonly no --daemonize yes; }}",
            f"QDRANT_URL={shlex.quote(stack.standin_url)}",  # type: ignore[attr-defined]
            f"QDRANT_API_KEY={shlex.quote(stack.standin_key)}",  # type: ignore[attr-defined]
        ]
    )


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age-encrypted"])
def test_a_whole_set_restores_by_hand_as_the_page_says(
    tier_stack: Stack,
    tiers_cluster: ScratchCluster,
    tiers_redis_server: ScratchRedis,
    standin: Any,
    tmp_path: Path,
    encrypted: bool,
) -> None:
    stack = tier_stack
    identity = tmp_path / "backup.key"  # made by age-keygen: the identity age -d -i reads
    if encrypted:
        subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
        identity.chmod(0o600)
        (stack.inventory / "group_vars" / "all.yml").write_text(
            f"backup_encryption_key_file: {identity}\n"
        )
    admin = {"socket_dir": str(tiers_cluster.socket_dir), "port": tiers_cluster.port}
    deployment = {"postgresql": {"app_user": tiers_cluster.app_role, **admin}}
    merge_targets(stack.state, "inv", {}, deployment)
    stack.cluster = tiers_cluster  # type: ignore[attr-defined]
    stack.standin_url, stack.standin_key = standin.url, standin.api_key  # type: ignore[attr-defined]
    stack.redis.set("plain:no-ttl", "kept")
    code, made, err = call(
        CREATE, stack.inventory, stack.capsys, tier=None, namespace=[], target=None
    )
    assert code == EXIT_OK, err
    set_dir = stack.state / "backups" / made["set_id"]
    stored = (set_dir / "redis" / "redis-full.rdb").read_bytes()
    assert stored.startswith(b"age-encryption.org/v1") is encrypted
    intended = snapshot(stack)

    stack.redis.flushall()  # every tier wrecked
    stack.redis.set("written:after-the-set", "must go")
    with tiers_cluster.admin(stack.pg.info.dbname) as conn:
        conn.execute("DELETE FROM memory_items WHERE source_kind <> 'fact'")
    for name in COLLECTIONS:
        stack.qdrant.delete_collection(name)

    blocks = sh_blocks(PAGE.read_text())
    assert len(blocks) >= 5, "the page lost its steps"
    prelude = reader_values(stack, set_dir, tiers_redis_server, identity)
    for number, block in enumerate(blocks[1:], start=1):
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", f"{prelude}\n{block}"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, f"block {number}:\n{block}\n{run.stdout}\n{run.stderr}"

    restored = snapshot(stack)
    for tier in ("redis", "rows", "points"):
        want = {t: intended[t][tier] for t in intended}
        got = {t: restored[t][tier] for t in restored}
        assert got == want, tier
    assert (tiers_redis_server.data_dir / "appendonlydir").is_dir()  # a new AOF, written
