"""PostgreSQL whole backup and restore against plain pg_dump -Fc / pg_restore -j2 (JSON).

    .venv/bin/python benchmarks/postgres_backup.py [--rows 800000]

Builds a memory_items table with the real schema (indexes included; 800k rows
of about 1 kB: ~1 GB with its indexes) in a throwaway cluster on port 31502
(plus ``MEMOPS_SCRATCH_OFFSET``; below the ephemeral port range, from which client
connections take their ports, so a connection cannot hold it), connecting as
memops does, as its ops login (BYPASSRLS: row security is forced on memory_items,
so no other login could dump it whole), then times, in the same run: plain
``pg_dump -Fc`` and our backup (the tier's dump, schema archive and per-tenant
checksums, then what verify does to each file: sha256, a full decompression,
pg_restore --list); ``pg_restore -j2`` of the plain dump into a new database and
our restore (load into a new database,
row-count and schema check, swap). Goals (issue #9): backup_time_ratio <= 0.3
with ours_dump_bytes <= pg_dump_fc_bytes, restore_time_ratio <= 1.0. Its files go
to a temporary directory that is removed, with the cluster, when it ends.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from memops.backup.manifest import FileRecord, file_kind  # noqa: E402
from memops.backup.postgresql import tools as pg_tools  # noqa: E402
from memops.backup.postgresql.tier import PostgresTier  # noqa: E402
from memops.backup.verify import check_decompresses, registered_checkers  # noqa: E402
from memops.testing.pgcluster import ScratchCluster, scratch_cluster  # noqa: E402

# Text that compresses like chat turns, and a distinct random 64-float embedding per row
# (the "+ g * 0" makes the subquery run per row rather than once).
FILL = """
INSERT INTO memory_items (tenant_id, source_kind, content, embedding, created_at)
SELECT 'tenant-' || (g %% 100), 'chat',
       'user ' || g || ' asked about ' || md5(g::text) || ' and ' || md5((g * 7)::text)
         || repeat(' the agent answered with a summary of the thread', 1 + g %% 12),
       ARRAY(SELECT (random() + g * 0)::real FROM generate_series(1, 64)),
       now() - g * interval '1 s'
FROM generate_series(1, %s) g
"""


def verify_like_a_set(path: Path, name: str, kind: str) -> None:
    """What backup.create's verification does to one file of the set."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    record = FileRecord(name, "postgresql", kind, file_kind(name)[1], path.stat().st_size, "")
    check_decompresses(path, record)
    registered_checkers()[kind](path, record)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=800_000)
    args = parser.parse_args()
    with scratch_cluster("memops-bkpg-bench", 31502, app_role="bkpgb", db_prefix="bench") as c:
        db = c.new_database()
        with c.connect(db, autocommit=True) as conn:
            c.migrate(conn)
            conn.execute(FILL % int(args.rows))
            conn.execute("VACUUM ANALYZE memory_items")
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        # memops' own login, as backup.create connects (the deploy's postgresql_ops_user)
        tier = PostgresTier(c.ops_target(db), admin=c.admin_target(), owner=c.app_role)
        work = Path(tempfile.mkdtemp(prefix="bkpg-bench-"))
        try:
            figures = measure(c, tier, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"rows": args.rows, "database_bytes": size, **figures}, indent=2))


def measure(c: ScratchCluster, tier: PostgresTier, work: Path) -> dict[str, float | int]:
    """Plain pg_dump -Fc / pg_restore -j2 and ours, on the same database, as the same login."""
    plain = work / "plain.dump"
    t0 = time.monotonic()
    pg_tools.run(
        ["pg_dump", "-Fc", "-f", str(plain)],
        env=pg_tools.libpq_env(tier.target),
        what="pg_dump",
    )
    plain_s = time.monotonic() - t0
    t0 = time.monotonic()
    artifact = tier.backup(work / "ours")
    for name in artifact.files:
        verify_like_a_set(work / "ours" / name, name, artifact.kinds[name])
    ours_s = time.monotonic() - t0
    path = work / "ours" / next(n for n, k in artifact.kinds.items() if k == "pgdump")
    with c.admin() as conn:
        conn.execute("CREATE DATABASE plainrestore")
    t0 = time.monotonic()
    pg_tools.run(
        ["pg_restore", "-j2", "--no-owner", "-d", "plainrestore", str(plain)],
        env=pg_tools.libpq_env(c.admin_target(), "plainrestore"),
        what="pg_restore",
    )
    plain_restore_s = time.monotonic() - t0
    t0 = time.monotonic()
    tier.restore(work / "ours", artifact, drop_old=True)
    ours_restore_s = time.monotonic() - t0
    return {
        "pg_dump_fc_s": round(plain_s, 3),
        "pg_dump_fc_bytes": plain.stat().st_size,
        "ours_backup_s": round(ours_s, 3),
        "ours_dump_bytes": path.stat().st_size,
        "backup_time_ratio": round(ours_s / plain_s, 3),
        "pg_restore_j2_s": round(plain_restore_s, 3),
        "ours_restore_with_swap_s": round(ours_restore_s, 3),
        "restore_time_ratio": round(ours_restore_s / plain_restore_s, 3),
    }


if __name__ == "__main__":
    main()
