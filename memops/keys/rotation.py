"""Re-encrypting the sealed short-term memory values under the key ring's active key.

The caller adds the new key to the ring file and makes it active *before* this
module rewrites anything, and the old keys stay in the ring: at every moment
each value opens with the ring on disk. Then, batch by batch: SCAN the value
keys, MGET them, reseal in Python what an older key sealed
(``memops.memory.values.reseal``), and write the batch back with one Lua script
that sets a key only while it still holds the value that was read (SET …
KEEPTTL: the TTL is untouched); a value a client changed meanwhile is left as
that client wrote it, and counted. After each batch the SCAN cursor and the
counts go to a checkpoint in the state directory, so an interrupted rotation
goes on from there; a key read again is already current, so resuming is safe.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memops.errors import Refused
from memops.files import write_private_atomic
from memops.keys.ring import KeyRing
from memops.memory.redis_scan import Pair, scan_batch
from memops.memory.values import inspect_value, reseal
from memops.model import memory_pattern
from memops.progress import meter

if TYPE_CHECKING:
    import redis

CHECKPOINT_FILE = "keys-rotation.json"
_VERSION = 1

# Per key: set the new value only if the key still holds the value read.
# KEYS[i] is the key; ARGV[2i-1] the value read, ARGV[2i] its resealed form.
# Returns {moved, changed}. pcall: a key that became another type is "changed".
COMPARE_AND_SET = """
local moved, changed = 0, 0
for i, key in ipairs(KEYS) do
  if redis.pcall('GET', key) == ARGV[2 * i - 1] then
    redis.call('SET', key, ARGV[2 * i], 'KEEPTTL')
    moved = moved + 1
  else
    changed = changed + 1
  end
end
return {moved, changed}
"""


class CheckpointError(Refused):
    """The checkpoint file is unreadable; the message names it."""


@dataclass(frozen=True)
class Counts:
    """What a rotation found, value by value (a key SCAN returns twice counts twice)."""

    moved: int = 0  # resealed under the new key (dry run: would be)
    current: int = 0  # already under the new key
    plain: int = 0  # not encrypted: nothing to do
    changed: int = 0  # changed by a client between read and write: left as it was written
    gone: int = 0  # deleted or expired between SCAN and MGET
    unreadable: Mapping[str, int] = field(default_factory=dict)  # reason code -> count

    @property
    def seen(self) -> int:
        return self.moved + self.current + self.plain + self.changed + self.gone + self.unread

    @property
    def unread(self) -> int:
        return sum(self.unreadable.values())

    def plus(self, other: Counts) -> Counts:
        reasons = dict(self.unreadable)
        for reason, count in other.unreadable.items():
            reasons[reason] = reasons.get(reason, 0) + count
        return Counts(
            self.moved + other.moved,
            self.current + other.current,
            self.plain + other.plain,
            self.changed + other.changed,
            self.gone + other.gone,
            dict(sorted(reasons.items())),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unreadable": dict(self.unreadable)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Counts:
        names = ("moved", "current", "plain", "changed", "gone")
        unreadable = {str(k): int(v) for k, v in dict(data.get("unreadable") or {}).items()}
        return cls(**{name: int(data.get(name, 0)) for name in names}, unreadable=unreadable)


@dataclass(frozen=True)
class Checkpoint:
    """Where a rotation is: written after every batch, read by a resumed run and keys.status."""

    to_key: str  # the key id values move to (the ring's active key)
    from_keys: tuple[str, ...]  # the ring's other keys when it started
    prefix: str
    cursor: int = 0  # the SCAN cursor to go on from
    batches: int = 0
    finished: bool = False
    counts: Counts = Counts()
    started_at: str = ""
    updated_at: str = ""

    def to_json(self) -> str:
        data = {**asdict(self), "version": _VERSION, "counts": self.counts.to_dict()}
        return json.dumps(data, indent=2, sort_keys=True)

    def resumes(self, ring: KeyRing, prefix: str) -> bool:
        """True when this unfinished rotation is the one ``ring`` and ``prefix`` go on with."""
        return not self.finished and self.to_key == ring.active and self.prefix == prefix


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def start_checkpoint(to_key: str, ring: KeyRing, prefix: str) -> Checkpoint:
    others = tuple(sorted(k for k in ring.keys if k != to_key))
    stamp = now()
    return Checkpoint(to_key, others, prefix, started_at=stamp, updated_at=stamp)


def checkpoint_path(state_dir: Path) -> Path:
    return state_dir / CHECKPOINT_FILE


def load_checkpoint(path: Path) -> Checkpoint | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"rotation checkpoint {path}: unreadable ({exc})") from None
    try:
        if data.get("version") != _VERSION:
            raise ValueError(f"version {data.get('version')!r}")
        return Checkpoint(
            to_key=str(data["to_key"]),
            from_keys=tuple(str(k) for k in data["from_keys"]),
            prefix=str(data["prefix"]),
            cursor=int(data["cursor"]),
            batches=int(data["batches"]),
            finished=bool(data["finished"]),
            counts=Counts.from_dict(data["counts"]),
            started_at=str(data.get("started_at") or ""),
            updated_at=str(data.get("updated_at") or ""),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"rotation checkpoint {path}: malformed ({exc})") from None


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    write_private_atomic(path, checkpoint.to_json() + "\n")


@dataclass(frozen=True)
class BatchPlan:
    """One batch sorted: the writes to make and the counts of everything else."""

    writes: Sequence[tuple[bytes, bytes, str]]  # (key, value read, resealed value)
    counts: Counts


def plan_batch(pairs: Sequence[Pair], ring: KeyRing) -> BatchPlan:
    """What resealing under ``ring.active`` would write, and what it leaves alone."""
    writes: list[tuple[bytes, bytes, str]] = []
    current = plain = gone = 0
    unreadable: dict[str, int] = {}
    for key, raw in pairs:
        if raw is None:
            gone += 1
            continue
        name = key.decode("utf-8", "replace")  # not UTF-8: its tag fails, it is counted
        resealed = reseal(raw, name, ring)
        if resealed is not None:
            writes.append((key, raw, resealed))
            continue
        check = inspect_value(raw, name, ring)
        if not check.good:
            unreadable[check.reason] = unreadable.get(check.reason, 0) + 1
        elif check.key_id is None:
            plain += 1
        else:
            current += 1
    counts = Counts(0, current, plain, 0, gone, dict(sorted(unreadable.items())))
    return BatchPlan(writes, counts)


def _script_arguments(writes: Sequence[tuple[bytes, bytes, str]]) -> list[bytes | str]:
    """KEYS then ARGV of COMPARE_AND_SET: every key, then (value read, resealed) pairs."""
    arguments: list[bytes | str] = [key for key, _old, _new in writes]
    for _key, old, new in writes:
        arguments += [old, new]
    return arguments


class BatchWriter:
    """COMPARE_AND_SET of one batch at a time on a connection of its own, reply read later.

    The server runs batch N's script while the caller reseals batch N+1 (about a
    fifth faster, benchmarks/key_rotation.py); the caller confirms N (reads its
    reply, then saves the checkpoint) before it sends N+1.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._sha = client.script_load(COMPARE_AND_SET)
        self._conn = client.connection_pool.get_connection()
        self._sent: Sequence[tuple[bytes, bytes, str]] = ()

    def send(self, writes: Sequence[tuple[bytes, bytes, str]]) -> None:
        self._sent = writes
        if writes:
            self._conn.send_command("EVALSHA", self._sha, len(writes), *_script_arguments(writes))

    def confirm(self) -> tuple[int, int]:
        """(moved, changed) of the batch sent last."""
        writes, self._sent = self._sent, ()
        if not writes:
            return 0, 0
        from redis.exceptions import NoScriptError

        try:
            moved, changed = self._conn.read_response()
        except NoScriptError:  # the server lost its scripts (SCRIPT FLUSH): load it again
            self._sha = self._client.script_load(COMPARE_AND_SET)
            self.send(writes)
            return self.confirm()
        return int(moved), int(changed)

    def close(self) -> None:
        if self._sent:  # a reply still on the wire: the connection is out of step
            self._conn.disconnect()
        self._client.connection_pool.release(self._conn)


def rotate_values(
    client: redis.Redis,
    ring: KeyRing,
    checkpoint: Checkpoint,
    path: Path | None,
    *,
    batch: int,
    dry_run: bool = False,
) -> Checkpoint:
    """Go on from ``checkpoint`` to the end of the keyspace; the final checkpoint.

    ``ring.active`` must be ``checkpoint.to_key`` and already saved in the ring
    file (unless ``dry_run``, which writes nothing: no value, no checkpoint).
    The checkpoint is saved to ``path`` after every batch, once the server has
    answered for the batch's writes (its cursor is the one after that batch, never
    the one read ahead). A key SCAN returns in two batches in a row may be read
    ahead of its first write and then count as changed, though it was moved.
    """
    if ring.active != checkpoint.to_key:
        raise ValueError("the ring's active key is not the rotation's target")
    title = f"re-encrypt {memory_pattern(checkpoint.prefix)}"
    writer = None if dry_run else BatchWriter(client)
    # The next batch is read (SCAN + MGET, on a connection of its own) while this one
    # is resealed and the one before it written: reading, sealing and writing overlap.
    try:
        with meter().count(title, "keys") as counter, ThreadPoolExecutor(1) as reader:
            counter.update(checkpoint.counts.seen)
            ahead = reader.submit(scan_batch, client, checkpoint.prefix, checkpoint.cursor, batch)
            in_flight: tuple[int, BatchPlan] | None = None  # sent, its reply not read yet
            while True:
                cursor, pairs = ahead.result()
                if cursor != 0:
                    ahead = reader.submit(scan_batch, client, checkpoint.prefix, cursor, batch)
                plan = plan_batch(pairs, ring)
                if in_flight is not None:
                    checkpoint = _confirmed(checkpoint, *in_flight, writer, path)
                    counter.update(checkpoint.counts.seen)
                if writer is not None:
                    writer.send(plan.writes)
                in_flight = (cursor, plan)
                if cursor == 0:
                    checkpoint = _confirmed(checkpoint, cursor, plan, writer, path)
                    counter.update(checkpoint.counts.seen)
                    return checkpoint
    finally:
        if writer is not None:
            writer.close()


def _confirmed(
    previous: Checkpoint,
    cursor: int,
    plan: BatchPlan,
    writer: BatchWriter | None,
    path: Path | None,
) -> Checkpoint:
    """The checkpoint once the batch sent last is written (saved), or planned (a dry run)."""
    moved, changed = (len(plan.writes), 0) if writer is None else writer.confirm()
    done = replace(
        previous,
        cursor=cursor,
        batches=previous.batches + 1,
        finished=cursor == 0,
        counts=previous.counts.plus(replace(plan.counts, moved=moved, changed=changed)),
        updated_at=now(),
    )
    if path is not None and writer is not None:
        save_checkpoint(path, done)
    return done
