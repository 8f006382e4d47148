"""No project module imports another that imports it back, directly or around a ring.

Every module of the project (config, facts, health, operations, lab, deploy.py, verify.py,
maintenance.py) is parsed with `ast`, never imported; every import counts, at module level
and inside a function alike (an import moved into a function to dodge a cycle is the cycle
still). A cycle fails the test, named module by module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "facts", "health", "operations", "lab")
SCRIPTS = ("deploy.py", "verify.py", "maintenance.py")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """{dotted name: file} of every project module (a package as its own name)."""
    found = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    for script in SCRIPTS:
        found[script[:-3]] = root / script
    return found


def imports_of(name: str, source: str, modules) -> set[str]:
    """The project modules `source` (module `name`) imports, wherever the import stands."""
    package = name if name in PACKAGES else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from config import firewall` imports the module config.firewall
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            # `import a.b.c` runs a.b.c; the packages' own __init__ files are walked as modules too
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imports_of(name, path.read_text(), modules) for name, path in modules.items()}


def knots(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(comps)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One ring through each knot: [a, b, ..., a]."""
    return [_ring(graph, comp) for comp in knots(graph)]


def _ring(graph, comp: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start, members = comp[0], set(comp)
    paths, frontier = {start: [start]}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return comp  # unreachable for a strongly connected component


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The parser finds module-level, function-level, `from pkg import module` and relative
    imports, and the cycle finder names a ring: the test can fail."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    for script in SCRIPTS:
        (tmp_path / script).write_text("")
    (tmp_path / "config" / "a.py").write_text("from config.b import X\n")
    (tmp_path / "config" / "b.py").write_text("def f():\n    from config import c\n")
    (tmp_path / "config" / "c.py").write_text("from . import a\nimport json\n")
    (tmp_path / "facts" / "d.py").write_text("import config.a\n")
    graph = import_graph(tmp_path)
    assert graph["config.a"] == {"config.b"}
    assert graph["config.b"] == {"config.c"}
    assert graph["config.c"] == {"config.a"}
    assert graph["facts.d"] == {"config.a"}
    assert cycles(graph) == [["config.a", "config.b", "config.c", "config.a"]]
    (tmp_path / "config" / "b.py").write_text("X = 1\n")
    assert cycles(import_graph(tmp_path)) == []


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50, "the project's modules were not found"
    comps = knots(graph)
    found = [_ring(graph, comp) for comp in comps]
    assert not found, "import cycles (hoist the shared piece into a leaf module):\n" + "\n".join(
        f"{' -> '.join(ring)} (its knot: {', '.join(comp)}; "
        f"each knot imports: {'; '.join(f'{m} -> {sorted(graph[m] & set(comp))}' for m in comp)})"
        for ring, comp in zip(found, comps))
