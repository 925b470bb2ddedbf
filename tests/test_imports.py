"""The architecture, checked from the source: the import graph of ``geometry``, ``data`` and ``carve``.

Every ``import`` statement is read with ``ast``, in-function (lazy) imports included, and resolved
to the module it loads: ``from carve import silhouettes`` loads ``carve.segmentation`` through the
package's lazy ``_EXPORTS`` table, so that is the edge. The graph must have no cycle, point one way
(``geometry`` <- ``data`` <- ``carve``, and inside ``carve`` from the command line down to the
engine), load no module from a string (``importlib.import_module`` outside the loader of the
packages' lazy export tables), and use no ``_private`` name of another module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("geometry", "data", "carve")
#: what each top-level package may import of ours
PACKAGE_DEPS = {"geometry": set(), "data": {"geometry"}, "carve": {"geometry", "data"}}
#: inside carve: each area and the areas it may import (the command line may import everything)
CARVE_DEPS = {
    "carve.metrics": set(),
    "carve.runlength": set(),
    "carve.opening": {"carve.runlength"},
    "carve.topology": {"carve.runlength", "carve.opening"},
    "carve.marching": {"carve.runlength"},
    "carve.mesh": {"carve.runlength", "carve.topology", "carve.marching"},
    "carve.nearby_views": set(),
    "carve.surface": {"carve.nearby_views"},
    "carve.texture": {"carve.mesh"},
    "carve.grid": {"carve.runlength", "carve.mesh", "carve.surface"},
    "carve.hull": {"carve.grid", "carve.runlength"},  # the octree returns the grid's run-length rows
    "carve.learn": {"carve.metrics"},
    "carve.depth": {"carve.learn", "carve.metrics", "carve.hull", "carve.grid"},
    "carve.segmentation": {"carve.learn", "carve.metrics", "carve.hull", "carve.grid"},
    "carve.viz": {"carve.grid", "carve.mesh"},
    "carve.refine": {"carve.grid", "carve.hull", "carve.segmentation", "carve.depth"},
    "carve.pipeline": {"carve.hull", "carve.grid", "carve.mesh", "carve.surface", "carve.segmentation", "carve.viz",
                       "carve.refine", "carve.texture"},
    "carve.batch": {"carve.pipeline", "carve.hull", "carve.viz"},
    "carve.cli": None,  # everything
    "carve.__main__": {"carve.cli"},
    "carve": set(),
}
#: the one module that imports by name: it serves the packages' literal ``_EXPORTS`` tables, read above
LAZY_LOADER = "data.lazy"
MAX_LINES = 450  # "about 400": a module past this holds more than one idea
LONG_KERNELS = {"carve.hull.numba_kernels"}  # flat compiled loops, one per rule; splitting them hides the rule


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SOURCES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in SOURCES.items()}


def is_package(name: str) -> bool:
    return SOURCES[name].name == "__init__.py"


def lazy_exports(name: str) -> dict:
    """A package's ``_EXPORTS = {public name: module}`` table, or {}."""
    for node in TREES[name].body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def resolve(module: str, name: str | None) -> str | None:
    """The module of ours that ``from module import name`` (or ``import module``) loads, or None."""
    if name is not None and f"{module}.{name}" in SOURCES:
        return f"{module}.{name}"
    if module in SOURCES:
        if name is not None and is_package(module):
            return lazy_exports(module).get(name, module)
        return module
    return None


def absolute(node: ast.ImportFrom, importer: str) -> str:
    if not node.level:
        return node.module
    base = importer.split(".") if is_package(importer) else importer.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str):
    """(imported module, imported name or None, line) for every import statement of a module."""
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                yield absolute(node, name), alias.name, node.lineno


def graph() -> dict:
    edges = {name: set() for name in SOURCES}
    for name in SOURCES:
        for module, imported, _ in imports(name):
            target = resolve(module, imported)
            if target is not None and target != name:
                edges[name].add(target)
    return edges


def area(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "carve" else parts[0]


def test_every_module_parses_and_the_packages_are_there():
    assert {"geometry", "data", "carve", "carve.hull", "carve.learn", "carve.viz", "carve.cli"} <= set(SOURCES)


def test_no_import_cycle():
    edges = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_point_one_way():
    bad = []
    for name, targets in graph().items():
        top, here = name.split(".")[0], area(name)
        for target in targets:
            if target.split(".")[0] not in PACKAGE_DEPS[top] | {top}:
                bad.append(f"{name} -> {target}")
            elif top == "carve" and target.startswith("carve") and area(target) != here:
                allowed = CARVE_DEPS.get(here, set())  # a new area imports nothing of carve until listed
                if allowed is not None and area(target) not in allowed:
                    bad.append(f"{name} -> {target}")
    assert not bad, "imports against geometry <- data <- carve (cli -> viz, segmentation, depth -> learn, hull, " \
                    f"grid): {bad}"


def test_no_private_name_of_another_module():
    bad = []
    for name in SOURCES:
        aliases = {}
        for module, imported, line in imports(name):
            target = resolve(module, imported)
            if target is None or target == name:
                continue
            if imported is not None and imported.startswith("_") and f"{module}.{imported}" not in SOURCES:
                bad.append(f"{name}:{line} imports {imported} from {module}")
        for node in ast.walk(TREES[name]):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in SOURCES:
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    target = resolve(absolute(node, name), alias.name)
                    if target is not None and target in SOURCES and target == f"{absolute(node, name)}.{alias.name}":
                        aliases[alias.asname or alias.name] = target
        for node in ast.walk(TREES[name]):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases and node.attr.startswith("_") and not node.attr.startswith("__"):
                bad.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not bad, f"private names used outside their module: {bad}"


def test_no_module_loaded_from_a_string():
    bad = []
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = getattr(func, "attr", None) or getattr(func, "id", None)
                if called in ("import_module", "__import__") and name != LAZY_LOADER:
                    bad.append(f"{name}:{node.lineno}")
    assert not bad, f"modules loaded by name (pass the object instead): {bad}"


def test_lazy_export_tables_name_real_modules_and_names():
    for name in SOURCES:
        for public, module in lazy_exports(name).items():
            assert module in SOURCES, f"{name}._EXPORTS[{public!r}] names {module}, which does not exist"
            defined = {n.name for n in TREES[module].body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            defined |= {t.id for n in TREES[module].body if isinstance(n, ast.Assign) for t in n.targets
                        if isinstance(t, ast.Name)}
            defined |= {a.asname or a.name for n in TREES[module].body if isinstance(n, ast.ImportFrom)
                        for a in n.names}
            assert public in defined, f"{name}._EXPORTS[{public!r}]: {module} defines no {public}"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_modules_hold_one_idea(name):
    lines = len(SOURCES[name].read_text().splitlines())
    if name not in LONG_KERNELS:
        assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by idea"
