"""The package layout's rules: the data model at the bottom, test support out of the product."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "memops"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _product_modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts]


def test_no_product_module_imports_the_test_support():
    offenders = {
        str(p.relative_to(PACKAGE.parent)): sorted(
            name for name in _imports(p) if name.startswith("memops.testing")
        )
        for p in _product_modules()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_data_model_imports_nothing_of_memops():
    assert not {n for n in _imports(PACKAGE / "model.py") if n.startswith("memops")}


def test_every_package_says_what_it_holds():
    missing = [
        str(init.relative_to(PACKAGE.parent))
        for init in PACKAGE.rglob("__init__.py")
        if not ast.get_docstring(ast.parse(init.read_text()))
    ]
    assert missing == []
