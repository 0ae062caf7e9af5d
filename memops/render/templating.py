"""The Jinja2 environment of the alert templates, and YAML output helpers.

Alert annotations carry Prometheus' own templates (``{{ $value }}``,
``{{ $labels.instance }}``), so the alert templates use other delimiters:
``[[ expression ]]``, ``[% statement %]`` and ``[# comment #]``. Strings from
the data file (summaries, descriptions, runbook text, test series) go through
the same environment, so they may say ``[[ r.window ]]`` or ``[[ prefix ]]`` and
stay in sync with the data; Prometheus' braces pass through untouched.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment

from memops.render.config import PROM_TEMPLATE

LINE_WIDTH = 120  # the repository's yamllint line-length
_SPACES = re.compile(r"\s+")
_GLUE = "\x00"


def environment(templates_dir: Path) -> jinja2.Environment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["num"] = number
    env.filters["pct"] = percent
    env.filters["dur"] = seconds_text
    env.filters["squash"] = squash
    env.globals["field"] = yaml_field
    env.globals["item"] = yaml_item
    env.globals["mapping"] = yaml_mapping
    return env


def squash(text: Any) -> str:
    """One line, single spaces: how every rendered string is normalised."""
    return _SPACES.sub(" ", str(text)).strip()


def tidy_lines(text: Any) -> str:
    """Keep a macro's line structure (PromQL reads better so) without blank lines or margins."""
    lines = [line.rstrip() for line in str(text).splitlines() if line.strip()]
    return textwrap.dedent("\n".join(lines))


def number(value: float | int) -> str:
    """A threshold as PromQL writes it: ``0.9``, ``1800``, ``1e-05``."""
    if isinstance(value, bool):
        raise TypeError(f"not a number: {value!r}")
    as_float = float(value)
    if as_float.is_integer() and abs(as_float) < 1e15:
        return str(int(as_float))
    return repr(as_float)


def percent(ratio: float) -> str:
    """``0.9`` -> ``90%``."""
    return f"{number(round(float(ratio) * 100, 6))}%"


def seconds_text(seconds: float) -> str:
    """Seconds as a Prometheus-style duration: ``0.5`` -> ``500ms``, ``300`` -> ``5m``."""
    value = float(seconds)
    if value < 1:
        return f"{number(round(value * 1000, 3))}ms"
    whole = int(value)
    if whole != value:
        return f"{number(value)}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _plain(text: str) -> str:
    """``text`` as a one-line YAML scalar (quoted only when YAML needs it)."""
    dumped = yaml.safe_dump(text, default_flow_style=True, width=1 << 20, allow_unicode=True)
    dumped = dumped.rstrip("\n")
    if dumped.endswith("\n..."):
        dumped = dumped[: -len("\n...")]
    return dumped


def yaml_field(indent: int, key: str, value: Any) -> str:
    """``key: value`` at ``indent``; long strings become a folded block within the line width."""
    return _keyed(" " * indent, f"{key}:", value, indent)


def yaml_item(indent: int, key: str, value: Any) -> str:
    """``- key: value``: the first field of a list item whose dash sits at ``indent``."""
    return _keyed(" " * indent + "- ", f"{key}:", value, indent + 2)


def yaml_mapping(indent: int, key: str, values: dict[str, str], *, dash: bool = False) -> str:
    """``key:`` and one ``name: value`` line per entry (sorted), or ``key: {}`` when empty.

    With ``dash`` the key opens a list item: ``- key:`` with the dash two columns left.
    """
    lead = " " * (indent - 2) + "- " if dash else " " * indent
    if not values:
        return f"{lead}{key}: {{}}"
    lines = [f"{lead}{key}:"]
    lines += [yaml_field(indent + 2, name, values[name]) for name in sorted(values)]
    return "\n".join(lines)


def _keyed(lead: str, key: str, value: Any, indent: int) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return f"{lead}{key} {json.dumps(value)}"
    text = str(value)
    if "\n" in text:
        body = "\n".join(" " * (indent + 2) + line for line in text.split("\n"))
        return f"{lead}{key} |-\n{body}"
    scalar = _plain(text)
    line = f"{lead}{key} {scalar}"
    if len(line) <= LINE_WIDTH and "\n" not in scalar:
        return line
    return f"{lead}{key} >-\n" + _folded(text, indent + 2)


def _folded(text: str, indent: int) -> str:
    """A folded block scalar body that YAML reads back as exactly ``text``."""
    if text != squash(text):
        raise ValueError(f"cannot fold a string with line breaks or runs of spaces: {text!r}")
    # keep Prometheus templates ({{ $labels.x }}) on one line: readers grep for them
    glued = PROM_TEMPLATE.sub(lambda m: m.group(0).replace(" ", _GLUE), text)
    lines = [
        line.replace(_GLUE, " ")
        for line in textwrap.wrap(
            glued,
            width=LINE_WIDTH - indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
    ]
    if " ".join(lines) != text:  # pragma: no cover - textwrap keeps single-spaced text intact
        raise ValueError(f"cannot fold {text!r}")
    return "\n".join(" " * indent + line for line in lines)
