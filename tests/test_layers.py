"""The package's layering, import cycles and ``__all__``, checked from the source.

ollamapy has three layers: the core (``ollamapy.*``), the front process
(``ollamapy.supervisor``) and the child process that holds a model (``ollamapy.runner``).
The core never imports the front or the runner, the runner never imports the front, and
llama.cpp (``llama_cpp``) is the runner's alone: a front that imported it would load the
library, and a crash in it would take the server down. The front talks to the runner over
the protocol in ``ollamapy.api.runner_protocol``, never by importing it.

Imports are read with ``ast``, wherever they are: at the top, inside functions, and under
``if TYPE_CHECKING:`` (a type-only import is still a dependency a refactoring must keep).
``runner/`` and ``supervisor/`` are named as they install, ``ollamapy.runner`` and
``ollamapy.supervisor``.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

__all__: list[str] = []

REPO = Path(__file__).resolve().parent.parent
PACKAGE_ROOTS = {
    "ollamapy": REPO / "ollamapy",
    "ollamapy.runner": REPO / "runner",
    "ollamapy.supervisor": REPO / "supervisor",
}
"""Installed package name -> the folder it is installed from (pyproject's package-dir)."""

CORE, SUPERVISOR, RUNNER, LLAMA_CPP = "core", "supervisor", "runner", "llama_cpp"
FORBIDDEN = {
    CORE: {SUPERVISOR, RUNNER, LLAMA_CPP},
    RUNNER: {SUPERVISOR},
    SUPERVISOR: {RUNNER, LLAMA_CPP},
}
"""Layer -> the layers it must not import."""

ALLOWED = {("ollamapy.cli.main", "ollamapy.supervisor.server", "serve")}
"""(importer, imported, function the import is in): the CLI's ``serve`` verb starts the server."""


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported, and the function it is imported in (if any)."""

    importer: str
    module: str
    line: int
    function: str | None

    def __str__(self) -> str:
        where = f" (in {self.function})" if self.function else ""
        return f"{self.importer}:{self.line} imports {self.module}{where}"


@cache
def modules() -> dict[str, Path]:
    """Every module of the package, by its installed name."""
    found: dict[str, Path] = {}
    for package, root in PACKAGE_ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


class _ImportVisitor(ast.NodeVisitor):
    """Collects every import of one module with the function it sits in."""

    def __init__(self, name: str, is_package: bool) -> None:
        self.name = name
        self.package = name if is_package else name.rpartition(".")[0]
        self.functions: list[str] = []
        self.found: list[Import] = []

    def _add(self, module: str, node: ast.stmt) -> None:
        self.found.append(Import(self.name, module, node.lineno, self.functions[-1] if self.functions else None))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        self._add(module, node)
        for alias in node.names:  # `from ollamapy import runner` imports a module, not a name
            if f"{module}.{alias.name}" in modules():
                self._add(f"{module}.{alias.name}", node)


@cache
def imports_of(name: str) -> tuple[Import, ...]:
    path = modules()[name]
    visitor = _ImportVisitor(name, path.name == "__init__.py")
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return tuple(visitor.found)


def all_imports() -> Iterator[Import]:
    for name in modules():
        yield from imports_of(name)


def layer(module: str) -> str | None:
    """The layer a module belongs to; None for the standard library and other packages."""
    top = module.split(".")[0]
    if top == "llama_cpp":
        return LLAMA_CPP
    if top != "ollamapy":
        return None
    for package, name in (("ollamapy.supervisor", SUPERVISOR), ("ollamapy.runner", RUNNER)):
        if module == package or module.startswith(package + "."):
            return name
    return CORE


def test_the_package_is_found() -> None:
    found = modules()
    assert {"ollamapy.cli.main", "ollamapy.runner.engine", "ollamapy.supervisor.app"} <= set(found)
    assert layer("ollamapy.runner.engine") == RUNNER and layer("ollamapy.supervisor") == SUPERVISOR
    assert layer("ollamapy.store.model") == CORE and layer("llama_cpp.llama_cpp") == LLAMA_CPP


def test_imports_stay_within_their_layer() -> None:
    crossings = [
        f"{imp}: {layer(imp.importer)} must not import {layer(imp.module)}"
        for imp in all_imports()
        if layer(imp.module) in FORBIDDEN[layer(imp.importer) or CORE]
        and (imp.importer, imp.module, imp.function) not in ALLOWED
    ]
    assert crossings == []


def test_the_allowed_exceptions_still_exist() -> None:
    """An exception that no longer happens is removed from ALLOWED, so it cannot come back unseen."""
    present = {(imp.importer, imp.module, imp.function) for imp in all_imports()}
    assert present >= ALLOWED


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_cycle_finder() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    """Modules form no cycle, counting imports in functions and TYPE_CHECKING blocks: a cycle
    that only works because one side imports late is still two modules that need each other."""
    known = modules()
    graph = {name: {imp.module for imp in imports_of(name) if imp.module in known and imp.module != name} for name in known}
    assert _cycles(graph) == []


# --- in a fresh interpreter ---------------------------------------------------------------

_EACH_ALONE = """
import importlib, json, os, sys
names, third_party = json.loads(sys.stdin.read())
# Third-party packages are loaded once here; each module then imports in a forked child
# that holds no ollamapy module yet, which is what a fresh interpreter would see of it.
for package in third_party:
    try:
        importlib.import_module(package)
    except ImportError:
        pass
failures = {}
for name in names:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            message = ""
            if "llama_cpp" in sys.modules and not name.startswith("ollamapy.runner"):
                message = name + " loads llama_cpp"
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    if message:
        failures[name] = message
print(json.dumps(failures))
"""


@cache
def _imported_alone() -> dict[str, str]:
    """Import every module alone (see ``_EACH_ALONE``): module -> why it failed."""
    names = sorted(modules())
    third_party = sorted(
        {imp.module.split(".")[0] for name in names for imp in imports_of(name)} - {"ollamapy", "llama_cpp"} - set(sys.stdlib_module_names)
    )
    request = json.dumps([names, third_party])
    result = subprocess.run([sys.executable, "-I", "-c", _EACH_ALONE], input=request, capture_output=True, text=True, timeout=300, check=True)
    failures: dict[str, str] = json.loads(result.stdout)
    return failures


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_imports_alone(name: str) -> None:
    """Each module imports by itself (a cycle that a given import order hides fails here),
    and outside the runner it does not load llama.cpp, even indirectly."""
    assert _imported_alone().get(name, "") == ""


# --- __all__ ------------------------------------------------------------------------------


def _binds_public_names(tree: ast.Module) -> bool:
    """Whether a module defines anything public (a docstring-only ``__init__`` does not)."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            return True
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and not t.id.startswith("_") for t in targets):
            return True
    return False


@pytest.mark.parametrize("name", sorted(modules()))
def test_public_module_declares_all(name: str) -> None:
    """Every module that defines public names lists its API in ``__all__``, and every name
    listed exists (a rename that forgets ``__all__`` breaks ``from … import *`` and the docs)."""
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    declares = any(
        isinstance(node, ast.Assign | ast.AnnAssign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))
        for node in tree.body
    )
    if not declares:
        assert not _binds_public_names(tree), f"{name} defines public names but no __all__"
        return
    exported = importlib.import_module(name).__all__
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(importlib.import_module(name), n)]
    assert missing == [], f"{name}.__all__ names what the module does not have"
