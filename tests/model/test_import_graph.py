"""The model package's modules import each other without a circle (type-only imports count too):
each can be read, and replaced, from the bottom up."""

from __future__ import annotations

import ast
from pathlib import Path

import pite_ros.model

PACKAGE = Path(pite_ros.model.__file__).parent


def imports_of(path: Path) -> set[str]:
    """The sibling modules ``path`` imports (``from pite_ros.model.x import ...``), anywhere in it."""
    return {node.module.split(".")[2] for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pite_ros.model.")}


def test_no_module_of_the_package_imports_itself_back() -> None:
    graph = {path.stem: imports_of(path) for path in PACKAGE.glob("*.py")}
    assert graph["generation"] >= {"processor"} and "modeling" in graph["stages"]  # the graph is read
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module not in done:
            for imported in graph.get(module, ()):
                visit(imported, (*path, module))
            done.add(module)

    for module in graph:
        visit(module, ())
    assert graph["modeling"].isdisjoint({"generation", "torch_generation"})  # composition and forward only
