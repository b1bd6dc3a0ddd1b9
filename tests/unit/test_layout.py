"""The layout holds: no import circle in `agent/`, `tests/` and `bench/` apart, a top level of
packages, and every private framework attribute in `agent/framework.py`.

Imports are read from the source (ast), counting those under `TYPE_CHECKING` and inside
functions, so a circle hidden by a late import is still one.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from harness import REPO

MAX_TOP_LEVEL_MODULES = 4
# what livekit-agents and the rtc SDK keep private, as the product would reach it: an
# attribute or module of theirs whose name starts with one underscore
PRIVATE_FRAMEWORK = re.compile(
    r"\b(?:server|session|agent|pool|proc|voice|tutor|http_context)\._[a-z]\w*"
    r"|\bself\._turn_handling\b|\blivekit\.[\w.]*\._[a-z]\w*"
)


def modules(root: Path, package: str) -> dict[str, Path]:
    found = {}
    for path in (root / package).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(path: Path, name: str, is_package: bool) -> Iterator[str]:
    """Every module name `path` imports, resolved (relative imports included)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    known = modules(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for target in imported(path, name, path.name == "__init__.py"):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_sees_a_circle_hidden_in_a_function(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import B\n")
    (package / "b.py").write_text("def late():\n    from pkg import a\n")
    assert circles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]


def test_no_module_of_the_product_imports_another_in_a_circle() -> None:
    assert circles(import_graph(REPO, "agent")) == []


def test_tests_and_benchmarks_share_the_harness_and_never_import_each_other() -> None:
    for importer, other in (("tests", "bench"), ("bench", "tests"), ("harness", "tests")):
        for path in (REPO / importer).rglob("*.py"):
            names = list(imported(path, importer, False))
            assert not [n for n in names if n == other or n.startswith(f"{other}.")], path
    for path in (REPO / "harness").rglob("*.py"):
        assert not [n for n in imported(path, "harness", False) if n.startswith("bench")], path


def test_the_products_top_level_is_packages() -> None:
    top = sorted(path.name for path in (REPO / "agent").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_private_framework_attributes_are_touched_in_one_module_only() -> None:
    offenders = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for path in (REPO / "agent").rglob("*.py")
        if path.name != "framework.py"
        for match in PRIVATE_FRAMEWORK.finditer(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    assert PRIVATE_FRAMEWORK.search("server._proc_pool.on(...)")
    assert PRIVATE_FRAMEWORK.search("from livekit.rtc._ffi_client import FfiClient")
