"""Runbook steps as a test runs them: parse the page, type the command, match its output.

A step is a command in a ```console block: ``$ invoke …`` and the lines it must
print (stdout, then stderr, in that order, others may come between), with an
optional ``(exit N)`` (``(exit N or M)`` when the state of the stack decides); a
block may hold several steps, each from its ``$`` line. Placeholders the reader
types (``<tenant>``, ``<row>``…) are filled from known values; a captured one
(``<set-id>``) is read from the first output line that matches it; any other
``<…>`` matches one word and ``…`` matches anything.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from memops.paths import PROJECT_DIR

INVOKE = str(Path(sys.executable).with_name("invoke"))
CAPTURED = ("set-id",)  # placeholders read from the output that first prints them
_PLACEHOLDER = re.compile(r"(<[a-z-]+>|…)")
_TYPED = re.compile(r"<([a-z-]+)>")


@dataclass(frozen=True)
class Step:
    command: str
    expected: tuple[str, ...]
    exit_codes: tuple[int, ...] = (0,)


@dataclass
class Section:
    title: str
    steps: list[Step] = field(default_factory=list)


def parse(text: str, heading: str = "### ") -> list[Section]:
    """The page's sections (headings starting with ``heading``) and their console steps."""
    sections: list[Section] = []
    for chunk in re.split(rf"^{re.escape(heading)}", text, flags=re.MULTILINE)[1:]:
        title, _, body = chunk.partition("\n")
        section = Section(title.strip())
        for block in re.findall(r"```console\n(.*?)```", body, flags=re.DOTALL):
            lines = [line.strip() for line in block.splitlines() if line.strip()]
            assert lines[0].startswith("$ invoke "), f"{title}: a step is one invoke command"
            starts = [i for i, line in enumerate(lines) if line.startswith("$ ")]
            for start, end in zip(starts, [*starts[1:], len(lines)], strict=True):
                section.steps.append(_step(title, lines[start:end]))
        sections.append(section)
    return sections


def _step(title: str, lines: list[str]) -> Step:
    assert lines[0].startswith("$ invoke "), f"{title}: {lines[0]!r} is not an invoke command"
    codes = (0,)
    if match := re.fullmatch(r"\(exit (\d+(?: or \d+)*)\)", lines[-1]):
        codes, lines = tuple(int(c) for c in match.group(1).split(" or ")), lines[:-1]
    return Step(lines[0][2:], tuple(lines[1:]), codes)


def pattern(
    line: str, values: dict[str, str], captured: tuple[str, ...] = CAPTURED
) -> re.Pattern[str]:
    regex = ""
    for part in _PLACEHOLDER.split(" ".join(line.split())):
        if part == "…":
            regex += ".*"
        elif _PLACEHOLDER.fullmatch(part):
            name = part[1:-1]
            if name in values:
                regex += re.escape(values[name])
            elif name in captured:
                regex += rf"(?P<{name.replace('-', '_')}>\S+)"
            else:
                regex += r"\S+"
        else:
            regex += re.escape(part)
    return re.compile(regex)


def check_output(
    step: Step, lines: list[str], values: dict[str, str], captured: tuple[str, ...] = CAPTURED
) -> None:
    """Every expected line matches a printed line, in order; captured placeholders bind."""
    position = 0
    for expected in step.expected:
        compiled = pattern(expected, values, captured)
        while position < len(lines):
            found = compiled.fullmatch(lines[position])
            position += 1
            if found:
                values.update({k.replace("_", "-"): v for k, v in found.groupdict().items()})
                break
        else:
            printed = "\n".join(lines)
            pytest.fail(f"`{step.command}`: no line matches {expected!r} in order:\n{printed}")


def argv(step: Step, values: dict[str, str]) -> list[str]:
    """The command's words after ``invoke``, as a shell splits them, placeholders filled."""
    words = []
    for word in shlex.split(step.command)[1:]:
        for name in _TYPED.findall(word):
            assert name in values, f"`{step.command}`: <{name}> is not known yet"
            word = word.replace(f"<{name}>", values[name])
        words.append(word)
    return words


def run_invoke(
    step: Step, values: dict[str, str], inventory: Path, state: Path, *, timeout: float = 300
) -> list[str]:
    """Run the step as typed against ``inventory``; its output lines, blanks dropped.

    The exit code must be one of the step's; ``--inventory`` is added (the page's steps act on
    the operator's default inventory) and the state directory comes from the environment.
    """
    done = subprocess.run(
        [INVOKE, *argv(step, values), "--inventory", str(inventory)],
        cwd=PROJECT_DIR,
        env={**os.environ, "MEMOPS_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [" ".join(line.split()) for line in (done.stdout + done.stderr).splitlines()]
    assert done.returncode in step.exit_codes, (step.command, done.stdout, done.stderr)
    return [line for line in lines if line]
