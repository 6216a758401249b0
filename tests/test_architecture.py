"""Layering: the library has no import cycles, every module imports, and no experiment imports another.

The import graph is read from the source (AST), module-level and function-level imports alike (a lazy
import inside a function hides a cycle but does not remove it); imports under ``if TYPE_CHECKING:`` are
not edges. ``from package import name`` is an edge to ``package.name`` when that is a module, else to
``package``.
"""
import ast
import importlib
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def module_files(package: str, root: pathlib.Path = REPO) -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every .py file under root/<package> (packages as their __init__)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _known_prefix(name: str, known) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in known:
            return ".".join(parts[:i])
    return None


def imports_of(name: str, path: pathlib.Path, known) -> set[str]:
    """The modules in ``known`` that module ``name`` (file ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        out.update(m for m in (_known_prefix(t, known) for t in targets) if m and m != name)
    return out


def import_graph(package: str, root: pathlib.Path = REPO) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports."""
    files = module_files(package, root)
    return {name: imports_of(name, path, files) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_on_a_hand_made_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_reads_relative_lazy_and_type_checking_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .sub import leaf\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "leaf.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                         "    from pkg import other\n\ndef f():\n    import pkg.top\n")
    (pkg / "top.py").write_text("from pkg.sub import leaf\nfrom pkg.sub.leaf import f\n")
    (pkg / "other.py").write_text("import os\n")
    graph = import_graph("pkg", tmp_path)
    assert graph == {"pkg": {"pkg.sub.leaf"}, "pkg.sub": set(), "pkg.sub.leaf": {"pkg.top"},
                     "pkg.top": {"pkg.sub.leaf"}, "pkg.other": set()}
    assert cycles(graph) == [["pkg.sub.leaf", "pkg.top"]]


def test_library_has_no_import_cycles():
    found = cycles(import_graph("prefill_router"))
    assert not found, "import cycles in the library: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("name", sorted(module_files("prefill_router")))
def test_every_library_module_imports(name):
    importlib.import_module(name)


def test_no_experiment_imports_another_experiment():
    graph = import_graph("experiments")
    bad = {name: sorted(m for m in deps if m != "experiments") for name, deps in graph.items()}
    assert not {k: v for k, v in bad.items() if v}, f"experiments import other experiments: {bad}"
    assert len(graph) > 4  # the scan saw the experiment modules


def test_only_experiments_import_the_stages():
    graph = import_graph("prefill_router")
    bad = sorted(m for m, deps in graph.items() if not m.startswith("prefill_router.stages")
                 and any(d.startswith("prefill_router.stages") for d in deps))
    assert not bad, f"library modules import the stages (only experiments/ may): {bad}"


def package_graph(graph: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    """The module graph collapsed onto ``package``'s direct children (subpackages and top-level modules):
    ``a -> b`` when some module under ``package.a`` imports one under ``package.b``. The root package itself
    (``package/__init__.py``, which every import passes through) is not a node."""
    prefix = package + "."

    def child(module: str) -> str | None:
        return module[len(prefix):].split(".")[0] if module.startswith(prefix) else None

    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        a = child(module)
        if a is not None:
            out.setdefault(a, set()).update(b for b in map(child, deps) if b is not None and b != a)
    return out


def test_package_graph_collapses_modules_onto_subpackages():
    graph = {"p": {"p.a.x"}, "p.a": set(), "p.a.x": {"p.a.y", "p.b.z"}, "p.a.y": {"p"}, "p.b.z": {"p.c"},
             "p.c": set()}
    assert package_graph(graph, "p") == {"a": {"b"}, "b": {"c"}, "c": set()}
    assert cycles(package_graph({**graph, "p.c": {"p.a.y"}}, "p")) == [["a", "b", "c"]]


def test_library_subpackages_have_no_import_cycles():
    """One-way layering between subpackages, not only between modules (e.g. router/ never imports
    evaluation/, which routes with router.policies)."""
    graph = package_graph(import_graph("prefill_router"), "prefill_router")
    assert {"evaluation", "router", "encoders", "stages"} <= set(graph)
    found = cycles(graph)
    assert not found, "import cycles between subpackages: " + "; ".join(" <-> ".join(c) for c in found)
