"""The package's wings and their floors: no module imports from a wing above its own."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "sgan_jax"
# Bottom to top: a module may import from its own wing and the wings below it.
FLOORS = ("runs", "data", "nets", "methods", "training", "sweeps")


def _imported_wings(path: pathlib.Path):
    """(line, wing) of every sgan_jax import in a module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "sgan_jax":
            names = [f"sgan_jax.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "sgan_jax":
                yield node.lineno, parts[1] if len(parts) > 1 else None


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)


def test_every_module_lives_in_a_wing():
    top_level = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top_level == ["__init__.py"]
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name[0] != "_") == sorted(
        FLOORS
    )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_wing_above(path):
    own = FLOORS.index(path.parent.name)
    for line, wing in _imported_wings(path):
        assert wing in FLOORS, f"{path.name}:{line} imports sgan_jax itself, not a wing"
        assert FLOORS.index(wing) <= own, (
            f"{path.name}:{line} imports from {wing}, above {path.parent.name}"
        )


def test_each_wing_says_what_it_is_in_one_docstring():
    for wing in FLOORS:
        docstring = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text()))
        assert docstring and len(docstring.splitlines()) == 1, wing
