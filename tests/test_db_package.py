"""service/db/: no import cycle through the package, and `service.db` keeps its names."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import service.db
from service.db import interface, opening

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "service.db"
# What callers imported from `service.db` when it was one module (and still do).
INTERFACE_NAMES = (
    *("Connection", "Database", "DatabaseError", "DatabaseUnavailable", "ForeignKeyViolation"),
    *("IntegrityError", "InvalidValue", "Params", "Row", "UndefinedTable", "UniqueViolation"),
    *("WriteConflict", "open_database", "returned"),
)


def modules_under(root: Path, top: str) -> dict[str, Path]:
    """Every module of the package `top` in `root`, by dotted name (a package: its own name)."""
    found = {}
    for path in sorted((root / top).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(root: Path, top: str) -> dict[str, set[str]]:
    """Who imports whom among the modules of `top`, as Python runs the imports.

    Every import statement counts, those inside functions too (they run on the first
    call); only `if TYPE_CHECKING:` blocks do not run. Importing `a.b.c` from outside the
    package `a.b` first runs `a/b/__init__.py`: that is an edge to `a.b` too.
    """
    modules = modules_under(root, top)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target in _imported(name, path.name == "__init__.py", tree, modules):
            graph[name] |= {each for each in _with_parents(name, target) if each in modules}
    return graph


def _runtime_statements(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield from _runtime_statements_in(child)
            continue
        yield from _runtime_statements_in(node)


def _runtime_statements_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _runtime_statements(node)


def _imported(
    name: str, is_package: bool, tree: ast.AST, modules: dict[str, Path]
) -> Iterator[str]:
    """The modules the import statements of module `name` need."""
    for statement in _runtime_statements(tree):
        if isinstance(statement, ast.Import):
            yield from (alias.name for alias in statement.names)
            continue
        base = statement.module or ""
        if statement.level:  # relative: from the module's own package upwards
            package = name.split(".") if is_package else name.split(".")[:-1]
            anchor = package[: len(package) - statement.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        submodules = [f"{base}.{alias.name}" for alias in statement.names]
        yield from (each for each in submodules if each in modules)
        if any(each not in modules for each in submodules):
            yield base  # a name defined in `base` itself: its code must have run


def _with_parents(importer: str, target: str) -> list[str]:
    """`target`, and the packages Python runs first to import it from `importer`."""
    parts = target.split(".")
    parents = [".".join(parts[:end]) for end in range(1, len(parts))]
    # The importer's own packages (itself, if a package) are already running.
    running = {".".join(importer.split(".")[:end]) for end in range(1, importer.count(".") + 2)}
    return [*(each for each in parents if each not in running), target]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), or a self-loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for following in sorted(graph[node]):
            if following not in index:
                visit(following)
                low[node] = min(low[node], low[following])
            elif following in stack:
                low[node] = min(low[node], index[following])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_goes_through_the_db_package() -> None:
    """No module of service/db/ imports one that imports it back, lazily or via __init__."""
    graph = import_graph(REPO_ROOT, "service")
    assert graph["service.db.sqlite"] >= {"service.db.interface"}  # the walk sees imports
    through_db = [
        cycle
        for cycle in cycles(graph)
        if any(module == PACKAGE or module.startswith(PACKAGE + ".") for module in cycle)
    ]
    assert through_db == []


def test_the_engines_import_the_interface_module_not_the_package() -> None:
    graph = import_graph(REPO_ROOT, "service")
    for engine in ("service.db.sqlite", "service.db.postgres"):
        assert "service.db.interface" in graph[engine]
        assert PACKAGE not in graph[engine]


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        pytest.param(  # the old layout: open_database imports the engine lazily
            {
                "db/__init__.py": "",
                "db/interface.py": "def open_database():\n    from app.db import sqlite\n",
                "db/sqlite.py": "from app.db.interface import Row\n",
            },
            ["app.db.interface", "app.db.sqlite"],
            id="lazy import back",
        ),
        pytest.param(  # an engine taking its errors from the package's __init__
            {
                "db/__init__.py": "from app.db.opening import open_database\n",
                "db/opening.py": "from app.db import sqlite\n",
                "db/sqlite.py": "from app.db import DatabaseError\n",
            },
            ["app.db", "app.db.opening", "app.db.sqlite"],
            id="through __init__",
        ),
        pytest.param(  # a module outside importing a submodule runs the package first
            {
                "db/__init__.py": "from .opening import open_database\n",
                "db/opening.py": "from app.settings import Settings\n",
                "settings.py": "from app.db.dialect import Dialect\n",
                "db/dialect.py": "",
            },
            ["app.db", "app.db.opening", "app.settings"],
            id="via the package's parent",
        ),
    ],
)
def test_the_walk_finds_the_cycles_it_must_refuse(
    tmp_path: Path, files: dict[str, str], cycle: list[str]
) -> None:
    """Control: each way a cycle came (or could come) back is seen by the walk above."""
    for relative, text in {"__init__.py": "", **files}.items():
        (tmp_path / "app" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "app" / relative).write_text(text, encoding="utf-8")
    assert cycles(import_graph(tmp_path, "app")) == [cycle]


def test_type_checking_imports_are_no_edge(tmp_path: Path) -> None:
    """Control: a type-only import runs nothing, so it cannot make a cycle."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "app" / "a.py").write_text("import app.b\n", encoding="utf-8")
    (tmp_path / "app" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import app.a\n",
        encoding="utf-8",
    )
    assert import_graph(tmp_path, "app")["app.b"] == set()
    assert cycles(import_graph(tmp_path, "app")) == []


def test_each_module_imports_first_in_a_fresh_interpreter() -> None:
    """Whichever module of the package (or service.settings) is imported first, it loads."""
    names = [*sorted(modules_under(REPO_ROOT, "service/db")), "service.settings"]
    script = textwrap.dedent(
        """
        import importlib, sys, traceback
        failed = []
        for name in sys.argv[1:]:
            for loaded in [m for m in sys.modules if m == "service" or m.startswith("service.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception:
                failed.append(name + ": " + traceback.format_exc(limit=-1))
        print("\\n".join(failed))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *names],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert len(names) >= 9, names  # the package, its 8 modules (and service.settings)
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stderr


def test_service_db_still_exports_what_callers_import() -> None:
    """Other modules keep `from service.db import Connection, ...` after the package move."""
    assert sorted(service.db.__all__) == sorted(INTERFACE_NAMES)
    for name in INTERFACE_NAMES:
        home = opening if name == "open_database" else interface
        assert getattr(service.db, name) is getattr(home, name), name
