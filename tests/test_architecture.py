"""The package's imports flow one way: no import circle, and no module imports a later pipeline stage.

Every ``import`` and ``from ... import`` of an ``amortize`` module counts,
including those inside functions (a lazy import hides a circle from Python,
not from the design). The stages follow the pipeline of docs/architecture.md.
"""

import ast
from pathlib import Path

import pytest

import amortize

PACKAGE = Path(amortize.__file__).parent

#: The pipeline, earliest first; a module may import its own stage and earlier ones.
STAGES = (
    ("amortize._version", "amortize.errors"),
    ("amortize.program",),
    ("amortize.graph",),
    ("amortize.simulate", "amortize.factors", "amortize.networks", "amortize.prepare", "amortize.design"),
    ("amortize.build",),
    ("amortize.devices", "amortize.loop", "amortize.train", "amortize.model_classifier"),
    ("amortize.infer", "amortize.padded_program", "amortize.misspecification"),
    ("amortize.refine",),
    ("amortize.convert",),
    ("amortize.diagnostics", "amortize.reference"),
    ("amortize.persist",),
    ("amortize.amortizer", "amortize.comparison"),
    ("amortize.loading", "amortize.demo", "amortize.cli", "amortize.models", "amortize"),
)


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("amortize",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module → the amortize modules it imports (a name imported from a package resolves to its module)."""
    def resolve(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    edges = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("amortize"):
                targets.update(resolve(f"{node.module}.{alias.name}") for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(resolve(a.name) for a in node.names if a.name.startswith("amortize"))
        edges[module] = {t for t in targets if t and t != module}
    return edges


def _stage(module: str) -> int:
    matches = [(len(prefix), i) for i, group in enumerate(STAGES) for prefix in group
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no pipeline stage: add it to STAGES (and to docs/architecture.md)"
    return max(matches)[1]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert _cycles(_imports(_modules())) == []


def test_no_module_imports_a_later_stage():
    edges = _imports(_modules())
    later = [f"{m} (stage {_stage(m)}) imports {t} (stage {_stage(t)})"
             for m, targets in edges.items() for t in targets if _stage(t) > _stage(m)]
    assert later == []


@pytest.mark.parametrize("edges, circle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_circle_finder_finds_circles(edges, circle):
    assert _cycles(edges) == circle


def _package(module: str) -> str:
    """The subpackage a module belongs to (``amortize.diagnostics``), or the module itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_module_reaches_for_a_private_name_of_another_part():
    """Private names stay inside their subpackage: a later stage uses a module's public API (issue 20,
    item 4: diagnostics called the facade's ``_get_sampler`` and a private helper of ``reference``)."""
    modules = _modules()
    found = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("amortize"):
                found += [f"{module} imports {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")
                          and _package(node.module) != _package(module)]
            elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                  and isinstance(node.value, ast.Name) and node.value.id in ("amortizer", "comparison")):
                found.append(f"{module} calls {node.value.id}.{node.attr}")
    assert found == []
