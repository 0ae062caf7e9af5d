"""The whole-database archive: a custom-format ``pg_dump`` compressed with zstd, and its loader.

Backup: ``pg_dump -Fc -Z0 | zstd`` (PostgreSQL 15's pg_dump compresses with gzip
only, several times slower), plus a schema-only archive taken in the same
snapshot: the dump goes through a pipe, so it has no data offsets and
``pg_restore -j`` cannot read it, but the small schema archive is a seekable
file, and it lets the indexes and constraints be built in parallel.

Load, into an empty database, in three steps:

1. pre-data (tables, functions) streamed from the dump;
2. data: every table's COPY block split into chunks of lines and sent through
   ``jobs`` COPY connections at once (the server's COPY parsing is the cost of a
   restore, and ``pg_restore -j`` loads one table in one session); sequence
   values and other data entries by ``pg_restore``;
3. post-data (indexes, constraints, triggers) by ``pg_restore -j`` from the
   schema archive (streamed from the dump, one at a time, for a set without it).

``copy_blocks`` reads a table's rows out of the dump as COPY text lines; a
tenant restore from a whole set uses it to pick that tenant's rows.
"""

from __future__ import annotations

import queue
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from memops.backup.artifacts import BackupError
from memops.backup.postgresql import tools as pg_tools
from memops.errors import one_line
from memops.progress import meter

# Level 3 with a minimum match of 6 bytes. Measured on the episodic table (text and
# float arrays, benchmarks/postgres_backup.py): 5% smaller than pg_dump -Fc's gzip -6 at
# half the CPU of level 5, which is the lowest plain level that is not larger; on source
# text 11% smaller than gzip -6.
ZSTD_OPTIONS = ("-3", "--zstd=minMatch=6")
JOBS = 2  # COPY sessions and pg_restore -j workers of a load
_CHUNK = 1 << 20  # bytes of COPY lines per chunk handed to a COPY session
_SIGPIPE = -13  # zstd's end when its reader stops after the table of contents
_END_OF_COPY = b"\\.\n"

Connect = Callable[[], Any]  # a new autocommit-off psycopg connection to the database loaded


# ------------------------------------------------------------------- backup


def dump(env: dict[str, str], path: Path, *, snapshot: str | None = None) -> None:
    """``pg_dump -Fc -Z0 | zstd`` into ``path`` (written under a temporary name, then renamed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    argv = ["pg_dump", "-Fc", "-Z0", *_snapshot_args(snapshot)]
    with open(tmp, "wb") as out, meter().watch_file(f"postgresql dump {path.name}", tmp):
        dumper = pg_tools.spawn(argv, env=env, stdout=subprocess.PIPE)
        zstd = pg_tools.spawn(
            ["zstd", "-T2", *ZSTD_OPTIONS, "-q", "-c"], stdin=dumper.stdout, stdout=out
        )
        assert dumper.stdout is not None
        dumper.stdout.close()
        _, zerr = zstd.communicate()
        derr = dumper.stderr.read() if dumper.stderr else b""
        dumper.wait()
    if dumper.returncode != 0 or zstd.returncode != 0:
        tmp.unlink(missing_ok=True)
        bad, rc, err = (
            ("pg_dump", dumper.returncode, derr)
            if dumper.returncode
            else ("zstd", zstd.returncode, zerr)
        )
        raise BackupError(f"postgresql: {bad} failed: {pg_tools.failure_line(bad, rc, err)}")
    tmp.replace(path)


def dump_schema(env: dict[str, str], path: Path, *, snapshot: str | None = None) -> None:
    """The schema-only custom-format archive (a few kB) that lets post-data load in parallel."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pg_tools.run(
            ["pg_dump", "-Fc", "--schema-only", *_snapshot_args(snapshot), "-f", str(tmp)],
            env=env,
            what="postgresql: pg_dump --schema-only",
        )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def _snapshot_args(snapshot: str | None) -> list[str]:
    return [f"--snapshot={snapshot}"] if snapshot else []


# ------------------------------------------------------------------ reading


@contextmanager
def _restore_stream(
    dump_path: Path,
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    what: str = "pg_restore",
    capture: bool = False,
    reads_all: bool = False,
) -> Iterator[IO[bytes] | None]:
    """``zstd -d DUMP | pg_restore ARGS``; yields pg_restore's stdout when ``capture``.

    pg_restore stops reading once it has what ``args`` select; zstd then ends on
    SIGPIPE, which is fine unless the whole stream was meant to be read (``reads_all``):
    a damaged stream is caught by verify's decompression check.
    """
    zstd = pg_tools.spawn(["zstd", "-d", "-q", "-c", str(dump_path)], stdout=subprocess.PIPE)
    try:
        restore = pg_tools.spawn(
            ["pg_restore", *args],
            env=env,
            stdin=zstd.stdout,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        )
        assert zstd.stdout is not None
        zstd.stdout.close()
        try:
            yield restore.stdout
        finally:
            if restore.stdout is not None:
                restore.stdout.close()
            err = restore.stderr.read() if restore.stderr else b""
            restore.wait()
    finally:
        zstd.wait()
    zstd_ok = zstd.returncode == 0 or (zstd.returncode == _SIGPIPE and not reads_all)
    if restore.returncode != 0 or not zstd_ok:
        raise BackupError(
            f"postgresql: {what} failed: "
            + pg_tools.failure_line("pg_restore", restore.returncode, err)
        )


def table_of_contents(dump_path: Path) -> list[str]:
    """``pg_restore --list`` of the dump: one line per archive entry (comments dropped)."""
    with _restore_stream(dump_path, ["--list"], what="pg_restore --list", capture=True) as out:
        assert out is not None
        text = out.read().decode("utf-8", "replace")
    return [line for line in text.splitlines() if line and not line.startswith(";")]


def _is_table_data(entry: str) -> bool:
    # "3350; 0 16386 TABLE DATA public memory_items owner"
    return " TABLE DATA " in entry


def copy_blocks(stream: IO[bytes]) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(``COPY t (cols) FROM STDIN``, its data lines) for each table in a pg_restore script.

    Each block's lines must be consumed before the next block is read. In COPY text
    format a data line is never ``\\.`` (a backslash in data is doubled), so that
    line ends a block exactly.
    """
    for line in stream:
        if line.startswith(b"COPY ") and line.endswith(b" FROM stdin;\n"):
            statement = line[: -len(b"stdin;\n")].decode("utf-8") + "STDIN"
            yield statement, _lines_until_end(stream)


def _lines_until_end(stream: IO[bytes]) -> Iterator[bytes]:
    for line in stream:
        if line == _END_OF_COPY:
            return
        yield line
    raise BackupError("postgresql: the dump ended inside a table's data")


@contextmanager
def table_rows(
    dump_path: Path, entries: Sequence[str] | None = None
) -> Iterator[Iterator[tuple[str, Iterator[bytes]]]]:
    """Every table's COPY block of the dump, read in one pass (see ``copy_blocks``).

    ``entries``: the dump's table of contents, when the caller has read it already.
    """
    if entries is None:
        entries = table_of_contents(dump_path)
    with (
        _list_file([e for e in entries if _is_table_data(e)]) as listing,
        _restore_stream(
            dump_path,
            ["--data-only", "-L", listing, "-f", "-"],
            what="reading the dump",
            capture=True,
        ) as out,
    ):
        assert out is not None
        yield copy_blocks(out)


@contextmanager
def _list_file(entries: Sequence[str]) -> Iterator[str]:
    with tempfile.NamedTemporaryFile("w", prefix="memops-toc-", suffix=".list") as handle:
        handle.write("".join(f"{entry}\n" for entry in entries))
        handle.flush()
        yield handle.name


# --------------------------------------------------------------------- load


def load(
    dump_path: Path,
    schema_path: Path | None,
    *,
    env: dict[str, str],
    connect: Connect,
    role: str,
    jobs: int = JOBS,
) -> None:
    """Load the dump into the (empty) database ``env`` and ``connect`` point at."""
    common = ["--exit-on-error", "--no-owner", "--role", role, "-d", env["PGDATABASE"]]
    with _restore_stream(
        dump_path, ["--section=pre-data", *common], env=env, what="pg_restore (pre-data)"
    ):
        pass
    entries = table_of_contents(dump_path)
    with table_rows(dump_path, entries) as blocks:
        for statement, lines in blocks:
            parallel_copy(statement, lines, connect, jobs=jobs)
    others = [e for e in entries if not _is_table_data(e)]
    with (
        _list_file(others) as listing,
        _restore_stream(
            dump_path,
            ["--section=data", "-L", listing, *common],
            env=env,
            what="pg_restore (sequences)",
        ),
    ):
        pass
    if schema_path is not None:
        pg_tools.run(
            ["pg_restore", f"-j{jobs}", "--section=post-data", *common, str(schema_path)],
            env=env,
            what="postgresql: pg_restore (post-data)",
        )
        return
    with _restore_stream(
        dump_path, ["--section=post-data", *common], env=env, what="pg_restore (post-data)"
    ):
        pass


def parallel_copy(statement: str, lines: Iterator[bytes], connect: Connect, *, jobs: int) -> int:
    """Send COPY text ``lines`` through ``jobs`` sessions at once; the number of lines sent.

    Chunks go round-robin to bounded queues, so memory stays at a few chunks per
    session; a session that fails stops the feed and its error is raised here.
    """
    sessions = [_CopySession(statement, connect) for _ in range(jobs)]
    sent = 0
    try:
        with meter().count(f"postgresql {statement.split()[1]}", "rows") as counter:
            for n, chunk in enumerate(_chunks(lines)):
                sent += chunk.count(b"\n")
                sessions[n % jobs].feed(chunk)
                counter.update(sent)
    finally:
        for session in sessions:
            session.finish()
    for session in sessions:
        if session.error is not None:
            raise BackupError(
                f"postgresql: loading data failed: {one_line(str(session.error))}"
            ) from session.error
    return sent


class _CopySession:
    """One connection running one COPY FROM STDIN, fed chunks from the loading thread."""

    def __init__(self, statement: str, connect: Connect) -> None:
        self.error: BaseException | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run, args=(statement, connect), daemon=True)
        self._thread.start()

    def _run(self, statement: str, connect: Connect) -> None:
        try:
            with connect() as conn:
                with conn.cursor() as cur, cur.copy(statement) as copy:
                    for chunk in iter(self._queue.get, None):
                        copy.write(chunk)
                conn.commit()
        except BaseException as exc:  # raised by parallel_copy in the loading thread
            self.error = exc

    def feed(self, chunk: bytes) -> None:
        if not self._put(chunk):
            raise BackupError(f"postgresql: loading data failed: {one_line(str(self.error))}")

    def finish(self) -> None:
        self._put(None)
        self._thread.join()

    def _put(self, item: bytes | None) -> bool:
        """Queue ``item``; False when the session has ended (failed) and takes no more."""
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False


def _chunks(lines: Iterator[bytes]) -> Iterator[bytes]:
    batch: list[bytes] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= _CHUNK:
            yield b"".join(batch)
            batch, size = [], 0
    if batch:
        yield b"".join(batch)
