"""Connections to the three memory tiers, built from their targets in one place.

Probes, migrations, the workload generator, the tests and every procedure that
reads or writes memory get their Redis, PostgreSQL and Qdrant clients here, so
TLS, ACL users, timeouts and secrets are handled the same way everywhere. The
secrets come from the inventory's state directory (``targets.json``, mode 0600)
or, for playbook steps, from stdin; never from argv.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from memops.deploy.targets import (
    PostgresTarget,
    QdrantTarget,
    RedisTarget,
    Target,
    Targets,
    TargetsError,
    load_targets,
)

if TYPE_CHECKING:
    import httpx
    import psycopg
    import redis
    from qdrant_client import QdrantClient

DEFAULT_TIMEOUT_S = 10.0

_T = TypeVar("_T", RedisTarget, PostgresTarget, QdrantTarget)


def redis_client(
    target: RedisTarget, *, timeout_s: float = DEFAULT_TIMEOUT_S, single_connection: bool = False
) -> redis.Redis:
    """A redis-py client; every socket operation is bounded by ``timeout_s``.

    Retries belong to the caller: the client itself never retries. No CLIENT
    SETINFO on connect, so an ACL user needs nothing beyond AUTH and its commands.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        ssl_ca_certs=target.ca_file,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=single_connection,
        driver_info=None,
    )


def postgres_connect(
    target: PostgresTarget,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    statement_timeout_s: float | None = None,
    application_name: str = "memops",
    autocommit: bool = True,
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    """A psycopg connection, opened now.

    ``timeout_s`` bounds the connect (libpq counts whole seconds, at least 2) and,
    through TCP_USER_TIMEOUT, a host that stops acknowledging packets;
    ``statement_timeout_s`` bounds every statement on the server side.
    """
    import psycopg

    timeout_ms = max(int(timeout_s * 1000), 1)
    options = (
        f"-c statement_timeout={max(int(statement_timeout_s * 1000), 1)}"
        if statement_timeout_s is not None
        else None
    )
    return psycopg.connect(
        **target.libpq_params(),
        connect_timeout=math.ceil(timeout_s),
        tcp_user_timeout=timeout_ms,
        application_name=application_name,
        autocommit=autocommit,
        **({"options": options} if options else cast(dict[str, Any], {})),
        **kwargs,
    )


def qdrant_client(target: QdrantTarget, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> QdrantClient:
    """The official qdrant-client over REST; ``timeout_s`` bounds each request."""
    from qdrant_client import QdrantClient

    with warnings.catch_warnings():
        # Its "Api key is used with an insecure connection" would be a stray stderr line of
        # every task on a plain-HTTP stand-in: whether Qdrant speaks TLS is the deploy's choice.
        warnings.filterwarnings("ignore", "Api key is used with an insecure connection")
        return QdrantClient(
            url=target.url,
            api_key=target.api_key,
            https=target.url.startswith("https://"),
            verify=target.verify_tls,
            timeout=max(math.ceil(timeout_s), 1),
            check_compatibility=False,  # one less request; memops uses only stable endpoints
        )


def qdrant_http(
    target: QdrantTarget, *, timeout_s: float = DEFAULT_TIMEOUT_S, send_api_key: bool = True
) -> httpx.Client:
    """Plain REST, for what qdrant-client does not stream (snapshots) and for probes.

    The API key goes in the ``api-key`` header of every request unless
    ``send_api_key`` is off (the probe sends it only where it is needed); proxies
    from the environment are ignored: memops talks to the service directly.
    """
    import httpx

    from memops.probes.tls import httpx_verify

    return httpx.Client(
        base_url=target.url,
        headers={"api-key": target.api_key} if target.api_key and send_api_key else {},
        verify=httpx_verify(target.verify_tls),
        timeout=timeout_s,
        trust_env=False,
    )


@dataclass(frozen=True)
class StackClients:
    """Clients for the components of one deployment (``targets.json``)."""

    targets: Targets

    def target(self, kind: type[_T], name: str | None = None) -> _T:
        """The component called ``name``, or the only one of that kind."""
        if name is not None:
            found: Target | None = self.targets.components.get(name)
            if not isinstance(found, kind):
                raise TargetsError(f"no {kind.kind} component named {name!r} in targets.json")
            return found
        matches = [t for t in self.targets.components.values() if isinstance(t, kind)]
        if len(matches) != 1:
            names = ", ".join(sorted(t.name for t in matches)) or "none"
            raise TargetsError(
                f"expected one {kind.kind} component in targets.json, found {names}: name one"
            )
        return matches[0]

    def redis(self, name: str | None = None, **options: Any) -> redis.Redis:
        """The node ``name``; by default the only one, or a replicated tier's primary now."""
        from memops.ha import redis_topology

        if name is None and redis_topology.is_replicated(self.targets):
            return redis_client(redis_topology.primary_target(self.targets), **options)
        return redis_client(self.target(RedisTarget, name), **options)

    def postgresql(self, name: str | None = None, **options: Any) -> psycopg.Connection[Any]:
        return postgres_connect(self.target(PostgresTarget, name), **options)

    def qdrant(self, name: str | None = None, **options: Any) -> QdrantClient:
        return qdrant_client(self.target(QdrantTarget, name), **options)


def stack_clients(state_dir: Path) -> StackClients:
    """Clients for what the deploy recorded in ``state_dir``/targets.json."""
    return StackClients(load_targets(state_dir))
