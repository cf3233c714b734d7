"""The package layout is the architecture (docs/architecture.md): layers only point down, and
no import circle anywhere, counting the imports inside functions too.

The walk reads the source with `ast` (nothing is imported), so it sees every import a module can
make, not only those one test run happens to reach.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "digitlab"

# Bottom to top. A module may import its own package and any package of a lower layer.
# Packages in one layer may not import each other.
LAYERS = [
    {"errors"},
    {"files"},
    {"config"},
    {"preprocess"},
    {"data"},
    {"runs"},
    {"models"},
    {"export"},
    {"predict", "report"},
    {"server"},
    {"pipeline"},
    {"combine"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
TOP_LEVEL_MODULES = {"__init__", "__main__", "combine", "config", "errors", "pipeline"}
MAX_LINES = 420  # "no module over ~400 lines": a longer one usually holds two concerns


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["digitlab", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The digitlab modules `name` imports (a `from P import x` of a submodule x counts as P.x)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "digitlab")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "digitlab":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "digitlab"


def test_every_import_names_a_module_that_exists():
    missing = {(m, t) for m, targets in GRAPH.items() for t in targets if t not in MODULES}
    assert not missing, missing


def test_layers_only_point_down():
    wrong = []
    for module, targets in GRAPH.items():
        room = _room(module)
        if room == "digitlab":
            continue  # the facade: `from digitlab import Predictor` resolves lazily, at call time
        for target in targets:
            other = _room(target)
            if other in (room, "digitlab"):
                continue  # its own package, or the root's __version__ / lazy_exports
            if RANK[other] >= RANK[room]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(sorted(wrong))


def test_no_import_circle():
    # Tarjan's strongly connected components over the module graph: a component of more than
    # one module (or a module importing itself) is a circle.
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in MODULES:
                continue
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
                circles.append(sorted(component))

    for v in MODULES:
        if v not in index and v != "digitlab":  # the root's facade imports lazily, by name
            visit(v)
    assert not circles, circles


def test_the_packages_are_the_rooms():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= TOP_LEVEL_MODULES, f"top-level modules outside a package: {sorted(top - TOP_LEVEL_MODULES)}"
    rooms = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert rooms <= set(RANK), f"packages without a layer in this test: {sorted(rooms - set(RANK))}"
    for room in rooms:
        doc = ast.get_docstring(ast.parse((PACKAGE / room / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc) > 40, f"{room}/__init__.py: say what lives there and what it may import"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_400_lines(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by concern"


def test_the_walk_sees_function_level_imports():
    # The check is only as good as the walk: a lazy import inside a function must count.
    assert "digitlab.pipeline" in GRAPH["digitlab.cli.commands"]
    assert "digitlab.models.finetune" in GRAPH["digitlab.pipeline"]
