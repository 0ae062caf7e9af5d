"""PostgreSQL whole backup and restore against plain pg_dump -Fc / pg_restore -j2 (JSON).

Builds a memory_items table with the real schema (indexes included) in a
throwaway cluster on port 37502, then times, in the same run: plain
``pg_dump -Fc`` and our backup (zstd dump, per-tenant COPY files, pgdump check);
``pg_restore -j2`` of the plain dump into a new database and our restore
(``zstd -d | pg_restore`` into a new database, verify, swap).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from memops.backup import pg_tools
from memops.backup.manifest import FileRecord
from memops.backup.postgres_tier import PostgresTier, check_pgdump
from memops.migrate import migrate
from memops.pgcluster import scratch_cluster

FILL = """
INSERT INTO memory_items (tenant_id, source_kind, content, embedding, created_at)
SELECT 'tenant-' || (g %% 100), 'chat', repeat(md5(g::text), 25),
       ARRAY(SELECT random()::real FROM generate_series(1, 64)), now() - g * interval '1 s'
FROM generate_series(1, %s) g
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)  # ~1 GB: about 800k rows
    args = parser.parse_args()
    with scratch_cluster("memops-bkpg-bench", 37502, app_role="bkpgb", db_prefix="bench") as c:
        db = c.new_database()
        with c.connect(db, autocommit=True) as conn:
            migrate(conn)
            conn.execute(FILL % int(args.rows))
            conn.execute("VACUUM ANALYZE memory_items")
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        tier = PostgresTier(c.app_target(db), admin=c.admin_target())
        work = Path(tempfile.mkdtemp(prefix="bkpg-bench-", dir="/tmp/bk-pg"))
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
        name = artifact.files[-1]
        path = work / "ours" / name
        check_pgdump(path, FileRecord(name, "postgresql", "pgdump", "zstd", 0, ""))
        ours_s = time.monotonic() - t0
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
        sizes = (plain.stat().st_size, path.stat().st_size)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "database_bytes": size,
                "pg_dump_fc_s": round(plain_s, 3),
                "pg_dump_fc_bytes": sizes[0],
                "ours_backup_s": round(ours_s, 3),
                "ours_dump_bytes": sizes[1],
                "backup_time_ratio": round(ours_s / plain_s, 3),
                "pg_restore_j2_s": round(plain_restore_s, 3),
                "ours_restore_with_swap_s": round(ours_restore_s, 3),
                "restore_time_ratio": round(ours_restore_s / plain_restore_s, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
