"""Imports go one way: coursegrader (workflow) -> sandboxgrader (engine) -> gradcheck.

Each module of a lower layer is parsed with `ast` (nothing is imported or run) and every import it
makes -- at the top, inside a function, relative, or by `importlib.import_module("...")` /
`__import__("...")` with a literal name -- is checked against the layers above it.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# layer -> (its folder, the packages above it it must never import)
LAYERS = {
    "sandboxgrader": (ROOT / "grading" / "sandboxgrader", {"coursegrader"}),
    "gradcheck": (ROOT / "utils" / "gradcheck", {"coursegrader", "sandboxgrader"}),
}


def imported_names(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, a module of `package`."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                out.append((node.lineno, node.module or ""))
            elif node.level == 1:  # from . import x / from .x import y: inside the package
                out.append((node.lineno, f"{package}.{node.module}" if node.module else package))
            else:  # from .. import x: climbs out of the package (grading/ is no package)
                out += [(node.lineno, node.module or a.name) for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            out.append((node.lineno, node.args[0].value))
    return out


def upward_imports(source: str, package: str, forbidden: set[str]) -> list[str]:
    return [f"line {line}: {name}" for line, name in imported_names(source, package) if name.split(".")[0] in forbidden]


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_no_module_of_a_lower_layer_imports_a_layer_above_it(layer):
    folder, forbidden = LAYERS[layer]
    modules = sorted(folder.rglob("*.py"))
    assert len(modules) >= 5, f"{folder} has moved: update LAYERS"
    bad = {
        str(p.relative_to(ROOT)): found for p in modules if (found := upward_imports(p.read_text(), layer, forbidden))
    }
    assert not bad, f"{layer} must import nothing from {sorted(forbidden)}: {bad}"


@pytest.mark.parametrize(
    "source",
    [
        "from coursegrader import nbutil",
        "import coursegrader.samples as s",
        "def f():\n    from coursegrader.records import record\n    return record",
        "import importlib\nm = importlib.import_module('coursegrader.settings')",
        "m = __import__('coursegrader')",
        "from ..coursegrader import autograde",
        "from .. import coursegrader",
    ],
)
def test_the_check_catches_every_spelling_of_an_upward_import(source):
    assert upward_imports(source, "sandboxgrader", {"coursegrader"}), source


def test_the_check_lets_the_engine_import_itself_and_the_standard_library():
    source = "import os\nfrom . import wire\nfrom .kernel import Limits\nfrom sandboxgrader.batch import Job\n"
    assert not upward_imports(source, "sandboxgrader", {"coursegrader"})
    assert imported_names("from . import wire", "sandboxgrader") == [(1, "sandboxgrader")]
