"""The package's shape: stages in one order, arrows one way, private names kept at home.

An AST walk of every import in ``dlsets/`` (those inside functions too; ``if TYPE_CHECKING:``
blocks aside, as they never run). See docs/design.md for the picture this checks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dlsets

PACKAGE = Path(dlsets.__file__).resolve().parent  # the checkout's, or the installed wheel's
BENCH = Path(__file__).resolve().parent / "bench"

# Each stage may import the stages before it, never one after. Inside a stage, modules may
# import each other, without circles. The package root (its __init__ and the table of moved
# paths) is the public facade over all stages; the command line sits on top of it.
STAGES = ["errors", "common", "store", "formats", "augment", "outputs", "data", "sources",
          "feed", "scale", "<root>", "cli", "__main__"]
MAX_LINES = 600


def _stage(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts or parts[0] == "moved":
        return "<root>"
    return parts[0]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST):
    for child in ast.iter_child_nodes(node):
        if _type_checking(child):
            continue
        yield child
        yield from _walk(child)


def _imports() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """(module -> modules it imports, [(importer, owner, private name)])."""
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound: dict[str, str] = {}  # local name -> dlsets module it names
        for node in _walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("dlsets"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        edges[mod].add(sub)
                        bound[alias.asname or alias.name] = sub
                    else:
                        edges[mod].add(target)
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            private.append((mod, target, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        edges[mod].add(alias.name)
                        if alias.asname:
                            bound[alias.asname] = alias.name
        for node in _walk(tree):  # module._name through a module imported by name
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                private.append((mod, bound[node.value.id], node.attr))
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    edges, _ = _imports()
    assert _cycles(edges) == []


def test_stages_import_only_the_stages_before_them():
    edges, _ = _imports()
    wrong = []
    for mod, targets in edges.items():
        for t in targets:
            if STAGES.index(_stage(t)) > STAGES.index(_stage(mod)):
                wrong.append(f"{mod} -> {t}")
    assert not wrong, sorted(wrong)


def test_private_names_stay_inside_their_stage():
    _, private = _imports()
    wrong = [f"{m} uses {owner}.{name}" for m, owner, name in private
             if _stage(m) != _stage(owner) or _stage(m) == "<root>"]
    assert not wrong, sorted(set(wrong))


def test_no_module_over_the_limit():
    long = {m: n for m, p in _modules().items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_every_module_belongs_to_a_stage():
    assert {_stage(m) for m in _modules()} <= set(STAGES)
    # at the root only the facade, the errors and the table of moved paths
    assert {p.name for p in PACKAGE.glob("*.py")} == {"__init__.py", "__main__.py", "errors.py",
                                                      "moved.py"}


def test_the_check_sees_a_circle_and_a_backward_arrow():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert STAGES.index(_stage("dlsets.cli.app")) > STAGES.index(_stage("dlsets.store.atomic"))


def _bound_names(path: Path) -> set[str]:
    """Names a module binds at its top level (defs, classes, assignments, imports)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def test_benchmark_scripts_import_what_exists():
    # the benchmarks are not run by the suite; what they import from dlsets is checked here,
    # statically (importing dlsets.feed.torch would need torch, which the core tests lack)
    modules = _modules()
    missing = []
    for path in sorted(BENCH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dlsets"):
                if node.module not in modules:
                    missing.append(f"{path.name}: {node.module}")
                    continue
                have = _bound_names(modules[node.module])
                missing += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if a.name not in have and f"{node.module}.{a.name}" not in modules]
            elif isinstance(node, ast.Import):
                missing += [f"{path.name}: {a.name}" for a in node.names
                            if a.name.startswith("dlsets") and a.name not in modules]
    assert not missing, missing
