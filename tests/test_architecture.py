"""The package's layout contract: layers import only downward, and modules stay readable.

Layers, from the bottom: ``errors`` (and the package's ``__init__``),
``storage``, ``data``, ``model``, ``coding``, ``training``, ``experiments``,
``lab``, ``playground``, ``cli``. A module may import its own layer and the layers below it,
never one above, lazily inside a function or not. Every import that is not at
the top of its module says why on its own line (a comment containing
``lazy``); imports for type hints under ``if TYPE_CHECKING:`` are top-level. No function is longer than 80 lines and no module longer than 500.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mnistcodec"
LAYERS = (
    "errors",
    "storage",
    "data",
    "model",
    "coding",
    "training",
    "experiments",
    "lab",
    "playground",
    "cli",
)
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500
MODULES = sorted(PACKAGE.rglob("*.py"))


def layer_of(module: str) -> int:
    """Rank of a dotted ``mnistcodec...`` module name; the package itself is at the bottom."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return 0 if parts[-1] != "__main__" else len(LAYERS)
    return LAYERS.index(parts[1])


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.Module, current: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every mnistcodec module ``tree`` imports, anywhere in it."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("mnistcodec")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = current.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            if not base.startswith("mnistcodec"):
                continue
            if base == "mnistcodec":
                found += [(node.lineno, f"mnistcodec.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, base))
    return found


def test_the_layers_cover_every_subpackage():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert subpackages == set(LAYERS) - {"errors"}
    for name in subpackages:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"mnistcodec.{name} needs a docstring saying what it owns"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_only_go_downward(path):
    current = module_name(path)
    tree = ast.parse(path.read_text())
    upward = [
        f"line {line}: {name}"
        for line, name in imported_modules(tree, current, path.name == "__init__.py")
        if name.split(".")[1:2] != ["__version__"] and layer_of(name) > layer_of(current)
    ]
    assert not upward, f"{current} imports from layers above it: {upward}"


def test_the_contract_catches_an_upward_import():
    tree = ast.parse("def f():\n    from mnistcodec.lab import figures\n")
    ((line, name),) = imported_modules(tree, "mnistcodec.experiments.sweep", False)
    assert layer_of(name) > layer_of("mnistcodec.experiments.sweep")
    tree = ast.parse("from ..cli import main\n")
    ((line, name),) = imported_modules(tree, "mnistcodec.coding.files", False)
    assert name == "mnistcodec.cli" and layer_of(name) > layer_of("mnistcodec.coding.files")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_late_imports_say_why(path):
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    top = set(map(id, tree.body))
    for node in tree.body:  # imports for type hints only count as top-level
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            top |= set(map(id, node.body))
    unexplained = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
            first = node.lineno - 1
            while first > 0 and lines[first - 1].strip().startswith(("from ", "import ")):
                first -= 1  # one comment serves a run of imports
            context = " ".join(lines[max(0, first - 1) : node.end_lineno]).lower()
            if "lazy" not in context:
                unexplained.append(node.lineno)
    assert not unexplained, (
        f"{module_name(path)}: imports inside functions without a reason, lines {unexplained}"
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_modules_and_functions_stay_short(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, (
        f"{module_name(path)} is over {MAX_MODULE_LINES} lines"
    )
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{module_name(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"
