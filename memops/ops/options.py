"""Checking task options before anything runs.

Invoke hands every non-flag option over as the text the user typed (or None when
it was not given). Each operation declares how to read its options with the
parsers below; the runner applies them before it resolves a lock, runs Ansible
or probes anything, so a typo is one line naming the option, exit 2, and nothing
touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from memops.errors import BadInput

Parser = Callable[[str, Any], Any]  # (option name, raw value) -> parsed value


class OptionError(BadInput, ValueError):
    """An option has a value the operation does not accept; the message names both."""


@dataclass(frozen=True)
class Described:
    """A parser with the line ``invoke TASK --help`` shows for its option; ``flag``: the
    option takes no value (the task's parameter defaults to False, not None)."""

    parse: Parser
    help: str = ""
    flag: bool = False
    default: Any = None  # what the parser gives when the option is not given

    def __call__(self, name: str, raw: Any) -> Any:
        return self.parse(name, raw)


def described(parse: Parser, help: str) -> Described:
    if isinstance(parse, Described):
        return replace(parse, help=help)
    return Described(parse, help)


def help_of(parse: Parser) -> str:
    """The option's help line ("" when its operation gives none)."""
    return parse.help if isinstance(parse, Described) else ""


def is_flag(parse: Parser) -> bool:
    return isinstance(parse, Described) and parse.flag


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refuse(name: str, accepts: str, raw: Any) -> OptionError:
    return OptionError(f"{flag_name(name)}: expected {accepts}, got {str(raw)!r}")


def number(
    *,
    default: float,
    greater_than: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
) -> Described:
    """A finite number, e.g. seconds."""
    bounds = []
    if greater_than is not None:
        bounds.append(f"greater than {greater_than:g}")
    if at_least is not None:
        bounds.append(f"at least {at_least:g}")
    if at_most is not None:
        bounds.append(f"at most {at_most:g}")
    accepts = "a number" + (" " + " and ".join(bounds) if bounds else "")

    def parse(name: str, raw: Any) -> float:
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise _refuse(name, accepts, raw) from None
        if not math.isfinite(value):
            raise _refuse(name, accepts, raw)
        if greater_than is not None and value <= greater_than:
            raise _refuse(name, accepts, raw)
        if at_least is not None and value < at_least:
            raise _refuse(name, accepts, raw)
        if at_most is not None and value > at_most:
            raise _refuse(name, accepts, raw)
        return value

    return Described(parse, default=default)


def integer(*, default: int, minimum: int = 0, maximum: int | None = None) -> Described:
    """A whole number in [minimum, maximum]."""
    accepts = f"a whole number from {minimum}" + (f" to {maximum}" if maximum is not None else "")

    def parse(name: str, raw: Any) -> int:
        if raw is None or raw == "":
            return default
        text = str(raw).strip()
        if not text.lstrip("-").isdigit():
            raise _refuse(name, accepts, raw)
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise _refuse(name, accepts, raw)
        return value

    return Described(parse, default=default)


def flag() -> Described:
    def parse(name: str, raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        if raw is None:
            return False
        raise _refuse(name, "no value (it is a flag)", raw)

    return Described(parse, flag=True)


def text(*, default: str = "", forbid: str = "") -> Parser:
    """Free text; ``forbid`` lists characters that may not appear in it."""

    def parse(name: str, raw: Any) -> str:
        value = default if raw is None else str(raw)
        bad = sorted({char for char in value if char in forbid or char in "\n\r\0"})
        if bad:
            raise OptionError(f"{flag_name(name)}: must not contain {' '.join(map(repr, bad))}")
        return value

    return parse


def choices(known: Callable[[], Collection[str]], *, many: bool = False) -> Parser:
    """One of the known words, or with ``many`` a comma-separated list of them.

    ``known`` is called only when the option was given, so an expensive list
    (such as the tags of a playbook) costs nothing when it is not used.
    """

    def parse(name: str, raw: Any) -> Any:
        if raw is None or raw == "":
            return () if many else ""
        words = [word.strip() for word in str(raw).split(",")] if many else [str(raw).strip()]
        allowed = set(known())
        if not all(words):
            raise OptionError(f"{flag_name(name)}: an empty item in {str(raw)!r}")
        unknown = [word for word in words if word not in allowed]
        if unknown:
            shown = ", ".join(repr(word) for word in unknown)
            raise OptionError(
                f"{flag_name(name)}: unknown {shown}; known: {', '.join(sorted(allowed))}"
            )
        return tuple(dict.fromkeys(words)) if many else words[0]

    return parse


def existing_file(*, default: Path | None = None) -> Parser:
    def parse(name: str, raw: Any) -> Path | None:
        if raw is None or raw == "":
            return default
        path = Path(str(raw)).expanduser().resolve()
        if not path.is_file():
            raise OptionError(f"{flag_name(name)}: no such file: {raw}")
        return path

    return parse


def directory(*, default: Path | None = None) -> Parser:
    """A directory to write into: it may not exist yet, but it may not be a file."""

    def parse(name: str, raw: Any) -> Path | None:
        if raw is None or raw == "":
            return default
        path = Path(str(raw)).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise OptionError(f"{flag_name(name)}: not a directory: {raw}")
        return path

    return parse


def argparse_type(name: str, parse: Parser) -> Callable[[str], Any]:
    """The same check as an argparse ``type=``, for ``python -m memops`` subcommands."""
    import argparse

    def convert(raw: str) -> Any:
        try:
            return parse(name, raw)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None

    return convert


def set_id(*, required: bool = True) -> Parser:
    """A backup set id as ``invoke backup.list`` prints it (never a path)."""
    from memops.backup.set_ids import InvalidSetId, check_set_id

    def parse(name: str, raw: Any) -> str:
        if raw in (None, ""):
            if required:
                raise OptionError(f"{flag_name(name)}: a set id is required (see backup.list)")
            return ""
        try:
            return check_set_id(str(raw))
        except InvalidSetId as exc:
            raise OptionError(f"{flag_name(name)}: {exc}") from None

    return parse


def _checked_name(name: str, value: Any) -> str:
    text_value = str(value)
    if not text_value or any(ord(char) < 32 for char in text_value):
        raise OptionError(f"{flag_name(name)}: {text_value!r} is empty or has control characters")
    return text_value


def names() -> Parser:
    """A repeatable option of names taken as data (tenants): any text but control characters."""

    def parse(name: str, raw: Any) -> tuple[str, ...]:
        values = [] if raw in (None, "") else [raw] if isinstance(raw, str) else list(raw)
        return tuple(dict.fromkeys(_checked_name(name, value) for value in values))

    return parse


def name_value(*, required: bool = True) -> Parser:
    """One name taken as data (a tenant): any text but control characters; "" when not given."""

    def parse(name: str, raw: Any) -> str:
        if raw in (None, ""):
            if required:
                raise OptionError(f"{flag_name(name)}: is required")
            return ""
        return _checked_name(name, raw)

    return parse


def uuid_value(*, required: bool = True) -> Parser:
    """A row id: a UUID (None when not given and not required)."""
    import uuid

    def parse(name: str, raw: Any) -> uuid.UUID | None:
        if raw in (None, ""):
            if required:
                raise OptionError(f"{flag_name(name)}: a row id (a UUID) is required")
            return None
        try:
            return uuid.UUID(str(raw).strip())
        except ValueError:
            raise _refuse(name, "a row id (a UUID)", raw) from None

    return parse


def key_id() -> Parser:
    """A key ring key id as ``invoke keys.status`` prints it: 16 hex digits."""
    import re

    def parse(name: str, raw: Any) -> str:
        text_value = "" if raw is None else str(raw).strip().lower()
        if not re.fullmatch(r"[0-9a-f]{16}", text_value):
            raise _refuse(name, "a key id (16 hex digits, see keys.status)", raw)
        return text_value

    return parse


def _tiers() -> Collection[str]:
    from memops.backup.artifacts import TIERS

    return TIERS


# Options several operations share, each with one help line.
NAMESPACE = described(
    name_value(), "the namespace (taken literally: quotes, globs and SQL in it are just characters)"
)
TIERS = described(
    choices(_tiers, many=True),
    "only these tiers, comma-separated: redis, postgresql, qdrant (default: every deployed tier)",
)
