"""The README and docs/ are true to the code, and the README stays a five-minute read.

What is checked, in README.md and every page under docs/ (runbooks included):

- every task named (``invoke TASK`` in code, or a namespaced task such as
  ``backup.restore`` in a code span; ``backup.*`` names a namespace) is a task of the
  collection tasks.py builds;
- every ``--option`` written next to a task is one of that task's options: in the
  same command (a code span or a line of a code block), or in the same row of a
  table whose first cell names the task; an option alone in a code span of a
  paragraph that names a task must be an option of some task;
- every exit code: each ``EXIT_*`` name exists in memops/exitcodes.py, a code
  written beside one (``exit 3 (`EXIT_INSUFFICIENT`)``, a row of the exit-code
  table) has its value, the table lists every constant, a number after "exit" is
  one of the codes, and a number written beside a verdict ("2 failing", "3 no
  verdict") is that verdict's code;
- every ``memops/…`` path named exists in the tree, and every relative link of the
  README leads to a file (the docs' own links are checked by ``mkdocs build
  --strict``, which also fails on a page the nav leaves out: the last test here
  makes sure the configuration still does).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from root_tasks import root_collection

from memops import exitcodes
from memops.health.cycle import EXIT_CODES as HEALTH_EXIT_CODES
from memops.paths import PROJECT_DIR

README = PROJECT_DIR / "README.md"
DOCS = PROJECT_DIR / "docs"
README_LIMIT = 10240  # bytes: what a newcomer reads in five minutes; the rest is in docs/

ALWAYS_ACCEPTED = {"help"}  # invoke gives every task --help
SHELL_BREAK = re.compile(r"\s(?:\|\|?|&&|;|>>?|2>&1|2>)\s|\)\s*$|`")
OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
INVOKE = re.compile(r"(?:^|(?<=[\s/(]))invoke\s+(?P<rest>.*)$")
FILE_SUFFIXES = (".yml", ".yaml", ".json", ".jsonl", ".md", ".py", ".prom", ".lock", ".log")
EXIT_NAME = re.compile(r"\bEXIT_[A-Z_]+\b")
EXIT_NUMBER = re.compile(r"\bexit(?:s|ed)?(?: with| code)? (\d+)\b")
EXIT_BESIDE_NAME = re.compile(r"\bexits? (\d+),? \(?`(EXIT_[A-Z_]+)`")
MEMOPS_PATH = re.compile(r"(?<![\w./-])memops/[\w./*-]*[\w*]")
# The words the docs use for a verdict, and the exit code each one means in the code.
VERDICT_WORDS = {
    "healthy": exitcodes.EXIT_OK,
    "degraded": exitcodes.EXIT_FAILED,
    "failing": exitcodes.EXIT_FAILING,
    "bad input": exitcodes.EXIT_BAD_INPUT,
    "no verdict": exitcodes.EXIT_INSUFFICIENT,
}
# Options a page proposes, not documents: docs/where-a-change-goes.md's worked example.
HYPOTHETICAL = {("backup.create", "redis-batch")}
VERDICT_BESIDE_NUMBER = re.compile(r"\b(\d) (" + "|".join(VERDICT_WORDS) + r")\b")


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Where:
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path.relative_to(PROJECT_DIR)}:{self.line}"


@dataclass(frozen=True)
class Block:
    """A paragraph, table row or code-block line: the unit an option is judged 'next to'."""

    where: Where
    text: str
    code: bool  # a line of a fenced code block
    row: bool  # a table row


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def blocks(path: Path) -> Iterator[Block]:
    """Paragraphs and table rows outside code blocks; code-block lines (continued by ``\\``)."""
    lines = path.read_text().splitlines()
    fenced = False
    paragraph: list[str] = []
    start = 0
    pending = ""

    def flush() -> Iterator[Block]:
        if paragraph:
            yield Block(Where(path, start), " ".join(paragraph), code=False, row=False)
            paragraph.clear()

    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith(("```", "~~~")):
            yield from flush()
            fenced = not fenced
            continue
        if fenced:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield Block(Where(path, number), pending + line, code=True, row=False)
            pending = ""
        elif line.lstrip().startswith("|"):
            yield from flush()
            yield Block(Where(path, number), line, code=False, row=True)
        elif not line.strip() or line.startswith("#"):
            yield from flush()
        else:
            if not paragraph:
                start = number
            paragraph.append(line.strip())
    yield from flush()


def all_blocks() -> list[Block]:
    return [block for path in doc_files() for block in blocks(path)]


# ----------------------------------------------------------------------------- tasks


@pytest.fixture(scope="module")
def task_options() -> dict[str, set[str]]:
    """Task name -> the option names it accepts (``--no-X`` for a flag X included)."""
    collection = root_collection()
    found: dict[str, set[str]] = {}
    for name in collection.task_names:
        task = copy.copy(collection[name])
        task.help = dict(task.help)  # get_arguments() pops the help it uses: spare the real task
        names = {n for argument in task.get_arguments() for n in argument.names}
        found[name] = names | {f"no-{n}" for n in names} | ALWAYS_ACCEPTED
    return found


def _namespaces(task_options: dict[str, set[str]]) -> set[str]:
    return {name.split(".")[0] for name in task_options if "." in name}


def commands(block: Block, namespaces: set[str]) -> Iterator[tuple[str, str]]:
    """(task, what follows it in the same command) for each command the block writes."""
    units = [block.text] if block.code else CODE_SPAN.findall(block.text)
    for unit in units:
        match = INVOKE.search(unit)
        if match:
            rest = match.group("rest")
        elif re.match(rf"(?:{'|'.join(map(re.escape, namespaces))})\.[a-z][a-z-]*(?:\s|$)", unit):
            rest = unit  # a namespaced task written without `invoke`: `backup.restore --namespace`
        else:
            continue
        rest = SHELL_BREAK.split(rest + " ", maxsplit=1)[0]
        words = rest.split()
        if not words or words[0].startswith("-"):
            continue  # invoke's own options: `invoke --list`
        task = words[0]
        if "<" in task or task in {"…", "...", "TASK"}:
            continue  # a placeholder: `invoke <task> --help`
        yield task, " ".join(words[1:])


def named_tasks(block: Block, namespaces: set[str], tasks: Iterable[str] = ()) -> set[str]:
    """Tasks named in a block: by a command, or by a namespaced name alone in a code span."""
    found = {task for task, _ in commands(block, namespaces)}
    for span in CODE_SPAN.findall(block.text):
        head = span.split()[0].rstrip(",.:;") if span.split() else ""
        prefix, _, rest = head.partition(".")
        if prefix not in namespaces or not rest or head.endswith(FILE_SUFFIXES):
            continue
        if rest == "*":  # `backup.*`: the namespace's tasks
            found.update(task for task in tasks if task.startswith(f"{prefix}."))
        elif re.fullmatch(r"[a-z][a-z-]*", rest):  # not a dotted name of something else
            found.add(head)
    return found


def test_every_task_named_is_a_real_task(task_options):
    namespaces = _namespaces(task_options)
    unknown = sorted(
        f"{block.where}: {task}"
        for block in all_blocks()
        for task in named_tasks(block, namespaces, task_options)
        if task not in task_options
    )
    assert unknown == [], "tasks the docs name that tasks.py does not have"


def test_every_option_written_next_to_a_task_is_one_of_its_options(task_options):
    namespaces = _namespaces(task_options)
    wrong: list[str] = []
    for block in all_blocks():
        for task, rest in commands(block, namespaces):
            if task not in task_options:
                continue  # reported by the test above
            wrong.extend(
                f"{block.where}: invoke {task} --{option}"
                for option in OPTION.findall(rest)
                if option not in task_options[task] and (task, option) not in HYPOTHETICAL
            )
        lone = [s[2:] for s in CODE_SPAN.findall(block.text) if OPTION.fullmatch(s)]
        if block.code or not lone:
            continue
        if block.row:  # a table row: the options of the task its first cell names
            first_cell = Block(
                block.where, block.text.strip().strip("|").split("|")[0], False, False
            )
            owners = named_tasks(first_cell, namespaces, task_options)
            owners &= set(task_options)
        elif named_tasks(block, namespaces, task_options):  # prose about tasks talks across
            owners = set(task_options)  # them: an option some task takes
        else:
            continue  # prose about other tools (`ansible-galaxy … --offline`)
        wrong.extend(
            f"{block.where}: --{option} (next to {', '.join(sorted(owners))})"
            for option in lone
            if owners and not any(option in task_options[task] for task in owners)
        )
    assert wrong == [], "options the docs write next to a task that the task does not take"


# ----------------------------------------------------------------------------- exit codes


CONSTANTS = {name: value for name, value in vars(exitcodes).items() if name.startswith("EXIT_")}


def test_every_exit_code_named_is_the_one_in_exitcodes():
    wrong: list[str] = []
    valid = set(CONSTANTS.values())
    for block in all_blocks():
        wrong.extend(
            f"{block.where}: {name} is not in memops/exitcodes.py"
            for name in EXIT_NAME.findall(block.text)
            if name not in CONSTANTS
        )
        for number, name in EXIT_BESIDE_NAME.findall(block.text):
            if name in CONSTANTS and CONSTANTS[name] != int(number):
                wrong.append(f"{block.where}: exit {number} beside {name} ({CONSTANTS[name]})")
        wrong.extend(
            f"{block.where}: exit {number} is no memops exit code"
            for number in EXIT_NUMBER.findall(block.text)
            if int(number) not in valid
        )
        for number, word in VERDICT_BESIDE_NUMBER.findall(block.text):
            if VERDICT_WORDS[word] != int(number):
                wrong.append(f"{block.where}: '{number} {word}' ({word} is {VERDICT_WORDS[word]})")
    assert wrong == []


def test_the_verdict_words_mean_what_the_health_cycle_returns():
    assert {state.value: code for state, code in HEALTH_EXIT_CODES.items()} == {
        word: VERDICT_WORDS[word] for word in ("healthy", "degraded", "failing")
    }


def test_the_exit_code_table_lists_every_code_with_its_value():
    page = DOCS / "tasks.md"
    section = page.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, int] = {}
    for row in section.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if row.startswith("|") and cells[0].isdigit():
            listed.update((name, int(cells[0])) for name in EXIT_NAME.findall(cells[1]))
    assert listed == CONSTANTS


# ----------------------------------------------------------------------------- paths and size


def test_every_memops_path_named_exists():
    missing = sorted(
        f"{block.where}: {path}"
        for block in all_blocks()
        for path in MEMOPS_PATH.findall(block.text)
        if not list(PROJECT_DIR.glob(path.rstrip("/")))
    )
    assert missing == [], "paths the docs name that are not in the tree (modules moved?)"


def test_every_relative_link_of_the_readme_leads_to_a_file():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    broken = [link for link in links if "://" not in link and not (PROJECT_DIR / link).exists()]
    assert broken == []


def test_the_readme_stays_under_10_kb():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move reference text to docs/"


def test_the_readme_keeps_the_test_command_ci_runs():
    ci = (PROJECT_DIR / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in README.read_text().splitlines()


def test_the_readme_lists_every_task(task_options):
    listed = set(re.findall(r"^\| `invoke ([\w.-]+)`", README.read_text(), re.M))
    assert listed == set(task_options)


# ----------------------------------------------------------------------------- the site


def test_the_site_build_fails_on_a_broken_link_and_a_page_left_out_of_the_nav(tmp_path):
    """mkdocs.yml still makes `mkdocs build --strict` (a step of `invoke test`) strict."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(PROJECT_DIR / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "index.md").open("a") as index:
        index.write("\n[gone](no-such-page.md) and [no anchor](health.md#no-such-anchor)\n")
    (tmp_path / "docs" / "left-out.md").write_text("# Not in the nav\n")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    run = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert run.returncode != 0
    for expected in ("left-out.md", "no-such-page.md", "no-such-anchor"):
        assert expected in run.stderr
