"""Settings from Qdrant's config file, overridden by ``QDRANT__SECTION__KEY`` variables.

Only the keys the stand-in honours are read; every other key of a real Qdrant
config (``storage.wal``, ``cluster``, ``tls``...) is accepted and ignored, so the
same file serves both.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "QDRANT__"

DEFAULTS: dict[str, Any] = {
    "log_level": "INFO",
    "telemetry_disabled": False,
    "storage": {"storage_path": "./storage", "snapshots_path": "./snapshots"},
    "service": {
        "host": "0.0.0.0",
        "http_port": 6333,
        "grpc_port": 6334,
        "api_key": None,
        "jwt_rbac": False,
    },
}

# Qdrant's level names (Rust's `log` crate) -> Python's
LOG_LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "OFF": logging.CRITICAL + 10,
}


class ConfigError(Exception):
    """The config file is missing or unreadable, or a value has the wrong type."""


@dataclass(frozen=True)
class Settings:
    storage_path: Path
    snapshots_path: Path
    host: str
    http_port: int
    grpc_port: int | None
    log_level: int
    telemetry_disabled: bool
    api_key: str | None = field(default=None, repr=False)
    jwt_rbac: bool = False  # accept JWTs signed with the API key (qdrant_standin.access)


def load_settings(config_path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Defaults, then the config file (when given), then the environment."""
    raw = copy.deepcopy(DEFAULTS)
    if config_path is not None:
        _merge(raw, _read_config(config_path))
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
            _set_path(raw, key[len(ENV_PREFIX) :].lower().split("__"), value)
    return _to_settings(raw)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file {path} is not valid YAML: {first_line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a YAML mapping")
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> None:
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _set_path(raw: dict[str, Any], parts: list[str], value: str) -> None:
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _to_settings(raw: dict[str, Any]) -> Settings:
    storage = _section(raw, "storage")
    service = _section(raw, "service")
    api_key = service.get("api_key")
    grpc_port = service.get("grpc_port")
    return Settings(
        storage_path=_path(storage.get("storage_path"), "storage.storage_path"),
        snapshots_path=_path(storage.get("snapshots_path"), "storage.snapshots_path"),
        host=_text(service.get("host"), "service.host"),
        http_port=_port(service.get("http_port"), "service.http_port"),
        grpc_port=None if grpc_port is None else _port(grpc_port, "service.grpc_port"),
        log_level=_log_level(raw.get("log_level")),
        telemetry_disabled=_flag(raw.get("telemetry_disabled"), "telemetry_disabled"),
        # like Qdrant, an empty key means no key
        api_key=str(api_key) if api_key not in (None, "") else None,
        jwt_rbac=_flag(service.get("jwt_rbac"), "service.jwt_rbac"),
    )


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping")
    return value


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string")
    return value


def _path(value: Any, key: str) -> Path:
    return Path(_text(value, key)).absolute()


def _port(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a port number, got {value!r}")
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a port number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key} must be between 0 and 65535, got {port}")
    return port


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _log_level(value: Any) -> int:
    # Qdrant also takes filter specs such as "INFO,actix_web=warn": the first item is the level
    name = str(value).split(",")[0].strip().upper()
    if name not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return LOG_LEVELS[name]
