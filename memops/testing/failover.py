"""Writes that count once a replica acknowledged them, kept up across a failover.

Used by the failover tests and ``benchmarks/failover.py``: the writer finds the primary
through the Sentinels (as an application does), writes key n = value n, and counts a
write only when ``WAIT`` says a replica has it. After a failover every counted write must
be on the new primary.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from memops.deploy.targets import RedisTarget, SentinelTarget, Targets
from memops.ha import redis_topology
from memops.ha.sentinel import master_state, stale_views


@dataclass(frozen=True)
class Ack:
    at: float  # time.monotonic() when WAIT answered
    primary: tuple[str, int]


def sentinel_client(targets: Targets, *, timeout_s: float = 1.0) -> Sentinel:
    """redis-py's Sentinel client for a deployed replicated tier."""
    nodes = redis_topology.redis_nodes(targets)
    sentinels: list[SentinelTarget] = redis_topology.sentinels(targets)
    return Sentinel(
        [(s.host, s.port) for s in sentinels],
        # A connect timeout for the Sentinels too: without one, asking the Sentinel of a
        # dead host first waits for the kernel's SYN retries (46 s here), not the failover.
        # And no retries (redis-py 8 retries 10 times with a backoff by default): the caller
        # asks again, and a failover's timing is the engine's, not the client's.
        sentinel_kwargs={
            "password": sentinels[0].password,
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            "retry": no_retry(),
        },
        password=nodes[0].password,
        socket_timeout=timeout_s * 2,
        socket_connect_timeout=timeout_s,
        retry=no_retry(),
    )


def no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


class AcknowledgedWriter(threading.Thread):
    """Writes ``{key_prefix}:{n}`` = ``value-{n}`` until stopped; a write counts (in
    ``acknowledged``, with its time and primary in ``acks``) once WAIT says ``replicas``
    replicas have it."""

    def __init__(
        self, targets: Targets, key_prefix: str, *, replicas: int = 1, wait_ms: int = 1000
    ) -> None:
        super().__init__(daemon=True, name="acknowledged-writer")
        self.targets = targets
        self.key_prefix = key_prefix
        self.replicas = replicas
        self.wait_ms = wait_ms
        self.acknowledged: dict[str, bytes] = {}
        self.acks: list[Ack] = []
        self.errors = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def run(self) -> None:
        sentinel = sentinel_client(self.targets)
        master = redis_topology.sentinels(self.targets)[0].master
        password = redis_topology.redis_nodes(self.targets)[0].password
        clients: dict[tuple[str, int], redis.Redis] = {}
        n = 0
        while not self._stop_event.is_set():
            key, value = f"{self.key_prefix}:{n}", f"value-{n}".encode()
            n += 1
            try:
                host, port = sentinel.discover_master(master)  # asked before every write
                address = (str(host), int(port))
                if address not in clients:
                    clients[address] = redis.Redis(
                        host=address[0],
                        port=address[1],
                        password=password,
                        socket_timeout=2,
                        socket_connect_timeout=1,
                        retry=no_retry(),
                    )
                primary = clients[address]
                primary.set(key, value)
                replicated = int(primary.execute_command("WAIT", self.replicas, self.wait_ms))
                if replicated >= self.replicas:
                    self.acknowledged[key] = value
                    self.acks.append(Ack(time.monotonic(), address))
            except (redis.RedisError, OSError):
                self.errors += 1
                time.sleep(0.05)
        for client in clients.values():
            client.close()

    def first_ack_after(self, moment: float, not_on: tuple[str, int]) -> float | None:
        """Seconds from ``moment`` to the first acknowledged write on another primary."""
        for ack in list(self.acks):
            if ack.at > moment and ack.primary != not_on:
                return ack.at - moment
        return None

    def lost_on(self, node: RedisTarget) -> list[str]:
        """The acknowledged keys ``node`` does not hold with their value."""
        keys = list(self.acknowledged)
        with redis.Redis(
            host=node.host, port=node.port, password=node.password, socket_timeout=5
        ) as client:
            values = client.mget(keys) if keys else []
        return [k for k, v in zip(keys, values, strict=True) if v != self.acknowledged[k]]


def rejoined(node: RedisTarget, primary: tuple[str, int]) -> bool:
    """``node`` replicates from ``primary`` with its link up."""
    with redis.Redis(
        host=node.host, port=node.port, password=node.password, socket_timeout=2
    ) as client:
        return redis_topology.follows(client.info("replication"), primary)


def redis_settled(targets: Targets) -> bool:
    """A quiet tier, where a switchover can start: every Sentinel names the same primary
    with no failover in progress and sees the others as its replicas, it is a primary, and
    every other node follows it."""
    found = redis_topology.sentinels(targets)
    endpoints = redis_topology.endpoints(found)
    views = [master_state(e, found[0].master, 2.0) for e in endpoints]
    if any("failover_in_progress" in str(view.get("flags", "")) for view in views):
        return False
    primaries = {(str(view.get("ip")), int(view.get("port", 0))) for view in views}
    if len(primaries) != 1:
        return False
    primary = primaries.pop()
    others = [
        n.endpoint for n in redis_topology.redis_nodes(targets) if (n.host, n.port) != primary
    ]
    if stale_views(endpoints, found[0].master, primary, others):
        return False
    for node in redis_topology.redis_nodes(targets):
        if (node.host, node.port) == primary:
            with redis.Redis(
                host=node.host, port=node.port, password=node.password, socket_timeout=2
            ) as client:
                if client.info("replication").get("role") != "master":
                    return False
        elif not rejoined(node, primary):
            return False
    return True


# ------------------------------------------------------------------ PostgreSQL (Patroni)

POSTGRES_TABLE = "memops_failover_rows"


def postgres_conninfo(targets: Targets, dbname: str = "postgres") -> str:
    """memops' administration login to every Patroni member at once: libpq tries them in
    turn and keeps the one that takes writes (``target_session_attrs=read-write``)."""
    import psycopg

    from memops.ha.patroni import patroni_targets

    members = patroni_targets(targets)
    login = targets.deployment[members[0].name]["admin_login"]
    return psycopg.conninfo.make_conninfo(
        host=",".join(t.host for t in members),
        port=",".join(str(t.port) for t in members),
        dbname=dbname,
        user=login["user"],
        password=login["password"],
        target_session_attrs="read-write",
        connect_timeout=2,
    )


class CommittedWriter(threading.Thread):
    """Inserts numbered rows into ``POSTGRES_TABLE`` through the multi-host string; a row
    counts once its commit returned (with synchronous_mode: on the synchronous standby too),
    with the time and the server that acknowledged it."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True, name="committed-writer")
        self.conninfo = conninfo
        self.acknowledged: list[int] = []
        self.acks: list[tuple[float, str]] = []  # (time.monotonic(), server host)
        self.errors = 0
        self._stop_event = threading.Event()

    def prepare(self) -> None:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {POSTGRES_TABLE} (n bigint PRIMARY KEY)")
            conn.execute(f"TRUNCATE {POSTGRES_TABLE}")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def run(self) -> None:
        import psycopg

        conn: psycopg.Connection[tuple[object, ...]] | None = None
        n = 0
        while not self._stop_event.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.conninfo, autocommit=True)
                conn.execute(f"INSERT INTO {POSTGRES_TABLE} (n) VALUES (%s)", (n,))
                self.acknowledged.append(n)
                self.acks.append((time.monotonic(), str(conn.info.host)))
            except psycopg.Error:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.1)
            n += 1
        if conn is not None:
            conn.close()

    def first_ack_after(self, moment: float, not_on: str) -> float | None:
        """Seconds from ``moment`` to the first row another server acknowledged."""
        for at, host in list(self.acks):
            if at > moment and host != not_on:
                return at - moment
        return None

    def lost(self) -> list[int]:
        """The acknowledged rows the current leader does not hold."""
        import psycopg

        with psycopg.connect(self.conninfo) as conn:
            stored = {row[0] for row in conn.execute(f"SELECT n FROM {POSTGRES_TABLE}")}
        return sorted(set(self.acknowledged) - stored)
