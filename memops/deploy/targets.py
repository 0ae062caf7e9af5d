"""Load ``targets.json``: where each deployed component listens and how to probe it.

The deploy playbook writes this file into the state directory. It holds
passwords and API keys, so it must be private to its owner (mode 0600), and the
dataclasses below keep secrets out of their ``repr``.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from memops.errors import Refused

TARGETS_FILE = "targets.json"


class TargetsError(Refused):
    """The targets file (or a target object) is missing, unsafe or malformed."""


@dataclass(frozen=True, kw_only=True)
class _PasswordServer:
    """A server reached at host:port that authenticates with a password."""

    name: str
    host: str
    port: int
    password: str | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return _host_port(self.host, self.port)

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.password,)


@dataclass(frozen=True, kw_only=True)
class RedisTarget(_PasswordServer):
    kind: ClassVar[str] = "redis"

    username: str | None = None
    tls: bool = False
    ca_file: str | None = None
    rpo_seconds: float = 900
    maxmemory_warn_ratio: float = 0.9


@dataclass(frozen=True, kw_only=True)
class SentinelTarget(_PasswordServer):
    """A Redis Sentinel watching the primary named ``master``."""

    kind: ClassVar[str] = "redis_sentinel"

    master: str
    quorum: int = 2


@dataclass(frozen=True, kw_only=True)
class PostgresTarget(_PasswordServer):
    kind: ClassVar[str] = "postgresql"

    dbname: str
    user: str
    sslmode: str = "prefer"
    expected_schema_version: int = 0
    max_replication_lag_seconds: float = 30
    # A member run by Patroni: its REST API (no credentials in the URL) and the basic auth
    # of the API's unsafe endpoints (switchover). None: a cluster of its own.
    patroni_url: str | None = None
    patroni_user: str | None = None
    patroni_password: str | None = field(default=None, repr=False)

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.password, self.patroni_password)

    def libpq_params(self, dbname: str | None = None) -> dict[str, Any]:
        """Where and as whom to connect, in libpq's parameter names (``dbname`` overrides).

        The one mapping from a target to libpq: psycopg takes these as keywords, the
        client tools (pg_dump, pg_restore) as PG* environment variables.
        """
        return {
            "host": self.host,
            "port": self.port,
            "dbname": dbname or self.dbname,
            "user": self.user,
            "password": self.password,
            "sslmode": self.sslmode,
        }


@dataclass(frozen=True)
class QdrantTarget:
    kind: ClassVar[str] = "qdrant"

    name: str
    url: str
    api_key: str | None = field(default=None, repr=False)
    verify_tls: bool = True

    @property
    def endpoint(self) -> str:
        parts = urlsplit(self.url)  # drop any user:password@ from the URL
        return f"{parts.scheme}://{_host_port(parts.hostname or '', parts.port)}"

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.api_key, urlsplit(self.url).password)


@dataclass(frozen=True)
class HttpTarget:
    """Any service with an HTTP health endpoint that answers 200 when it is fine.

    Used for the observability services (Prometheus, Alertmanager, the exporters).
    ``bearer_token`` goes out as ``Authorization: Bearer …``, ``api_key`` as
    ``api-key: …`` (Qdrant's header); both stay out of ``repr``.
    """

    kind: ClassVar[str] = "http"

    name: str
    url: str = field(repr=False)  # may carry user:password@; ``endpoint`` is the safe form
    bearer_token: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    verify_tls: bool = True
    expect_status: int = 200

    @property
    def endpoint(self) -> str:
        parts = urlsplit(self.url)  # drop any user:password@ and the query from the URL
        return f"{parts.scheme}://{_host_port(parts.hostname or '', parts.port)}{parts.path}"

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.bearer_token, self.api_key, urlsplit(self.url).password)


Target = RedisTarget | SentinelTarget | PostgresTarget | QdrantTarget | HttpTarget
KINDS = ("redis", "redis_sentinel", "postgresql", "qdrant", "http")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class Targets:
    """Every component of one deployment, by component name."""

    inventory: str | None
    generated_at: str | None
    components: Mapping[str, Target]
    path: Path | None = None
    # How components were installed (e.g. {"qdrant": {"standin": true}}) and where
    # health metrics go ({"textfile_dir": ...}); free-form, written by the deploy.
    deployment: Mapping[str, Any] = field(default_factory=dict)


def load_targets(path: str | os.PathLike[str]) -> Targets:
    """Read targets from a state directory (or a path to the targets file itself)."""
    file = Path(path)
    if file.is_dir():
        file = file / TARGETS_FILE
    _check_private(file)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TargetsError(
            f"{file}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetsError(f"{file}: cannot read: {exc}") from None
    return _parse_targets(data, str(file), file)


def parse_target(name: str, data: object, source: str, default_kind: str | None = None) -> Target:
    """Validate one component object (as found under ``components`` in targets.json).

    ``source`` names where it came from, for error messages; ``default_kind``
    is used when the object has no ``kind`` field.
    """
    if not isinstance(data, dict):
        raise TargetsError(f"{source}: expected a JSON object, got {type(data).__name__}")
    fields = _Fields(data, source)
    kind = fields.text("kind", default=default_kind)
    if kind == "redis":
        return RedisTarget(
            name=name,
            host=fields.text("host"),
            port=fields.port("port"),
            password=fields.text("password", default=None),
            username=fields.text("username", default=None),
            tls=fields.flag("tls", default=False),
            ca_file=fields.text("ca_file", default=None),
            rpo_seconds=fields.number("rpo_seconds", default=900, minimum=1),
            maxmemory_warn_ratio=fields.number(
                "maxmemory_warn_ratio", default=0.9, minimum=0.01, maximum=1
            ),
        )
    if kind == "redis_sentinel":
        return SentinelTarget(
            name=name,
            host=fields.text("host"),
            port=fields.port("port"),
            password=fields.text("password", default=None),
            master=fields.text("master"),
            quorum=int(fields.number("quorum", default=2, minimum=1, integer=True)),
        )
    if kind == "postgresql":
        sslmode = fields.text("sslmode", default="prefer")
        if sslmode not in SSLMODES:
            raise TargetsError(f"{source}.sslmode: expected one of {', '.join(SSLMODES)}")
        return PostgresTarget(
            name=name,
            host=fields.text("host"),
            port=fields.port("port"),
            dbname=fields.text("dbname"),
            user=fields.text("user"),
            password=fields.text("password", default=None),
            sslmode=sslmode,
            expected_schema_version=int(
                fields.number("expected_schema_version", default=0, minimum=0, integer=True)
            ),
            max_replication_lag_seconds=fields.number(
                "max_replication_lag_seconds", default=30, minimum=0
            ),
            patroni_url=(
                fields.http_url("patroni_url").rstrip("/") if "patroni_url" in data else None
            ),
            patroni_user=fields.text("patroni_user", default=None),
            patroni_password=fields.text("patroni_password", default=None),
        )
    if kind == "qdrant":
        url = fields.http_url("url")
        return QdrantTarget(
            name=name,
            url=url.rstrip("/"),
            api_key=fields.text("api_key", default=None),
            verify_tls=fields.flag("verify_tls", default=True),
        )
    if kind == "http":
        url = fields.http_url("url")
        return HttpTarget(
            name=name,
            url=url,
            bearer_token=fields.text("bearer_token", default=None),
            api_key=fields.text("api_key", default=None),
            verify_tls=fields.flag("verify_tls", default=True),
            expect_status=int(
                fields.number("expect_status", default=200, minimum=100, maximum=599, integer=True)
            ),
        )
    raise TargetsError(f"{source}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def _check_private(file: Path) -> None:
    try:
        mode = file.stat().st_mode
    except FileNotFoundError:
        raise TargetsError(
            f"{file}: targets file not found (the deploy playbook writes it)"
        ) from None
    except OSError as exc:
        raise TargetsError(f"{file}: cannot read: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TargetsError(
            f"{file}: refusing to read: it holds secrets but is accessible by group/others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {file}"
        )


def _parse_targets(data: object, source: str, file: Path | None) -> Targets:
    if not isinstance(data, dict):
        raise TargetsError(f"{source}: expected a JSON object at the top level")
    top = _Fields(data, source)
    components = data.get("components")
    if not isinstance(components, dict) or not components:
        raise TargetsError(f"{source}: components: expected a non-empty JSON object")
    parsed = {
        name: parse_target(name, value, f"{source}: components.{name}")
        for name, value in components.items()
    }
    return Targets(
        inventory=top.text("inventory", default=None),
        generated_at=top.text("generated_at", default=None),
        components=parsed,
        path=file,
        deployment=deployment if isinstance(deployment := data.get("deployment"), dict) else {},
    )


_REQUIRED: Any = object()


class _Fields:
    """Typed access to the fields of one JSON object, with errors naming the field.

    An absent field and a JSON ``null`` both mean "use the default".
    """

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self._data = data
        self._where = where

    def _absent(self, key: str, default: Any) -> bool:
        if self._data.get(key) is not None:
            return False
        if default is _REQUIRED:
            raise TargetsError(f"{self._where}.{key}: missing")
        return True

    def _bad(self, key: str, expected: str) -> TargetsError:
        # Never echo the value itself: the field might hold a secret.
        got = type(self._data[key]).__name__
        return TargetsError(f"{self._where}.{key}: expected {expected}, got {got}")

    def text(self, key: str, default: Any = _REQUIRED) -> Any:
        if self._absent(key, default):
            return default
        value = self._data[key]
        if not isinstance(value, str) or not value:
            raise self._bad(key, "a non-empty string")
        return value

    def flag(self, key: str, default: bool) -> bool:
        if self._absent(key, default):
            return default
        value = self._data[key]
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def number(
        self,
        key: str,
        default: Any = _REQUIRED,
        minimum: float | None = None,
        maximum: float | None = None,
        integer: bool = False,
    ) -> Any:
        if self._absent(key, default):
            return default
        value = self._data[key]
        allowed = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise self._bad(key, "an integer" if integer else "a number")
        if minimum is not None and value < minimum:
            raise TargetsError(f"{self._where}.{key}: must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise TargetsError(f"{self._where}.{key}: must be at most {maximum}, got {value}")
        return value

    def http_url(self, key: str) -> str:
        url = self.text(key)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetsError(f"{self._where}.{key}: expected an http:// or https:// URL")
        return url

    def port(self, key: str) -> int:
        return int(self.number(key, minimum=1, maximum=65535, integer=True))


def _host_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"
