"""The package's imports point down: no cycle among gpugrad's modules, counting imports
inside functions, and CuPy imported by the CUDA device's module alone."""
import ast
import pathlib

import gpugrad

PACKAGE = pathlib.Path(gpugrad.__file__).parent
CUDA_MODULE = "gpugrad._cuda"


def _modules():
    """{dotted module name: path} for every .py file of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name, path, modules):
    """(gpugrad modules imported, top-level packages imported) by one module, anywhere in
    it. ``from X import y`` counts X.y when y is a module, else X (a parent package is
    imported on the way to any of its modules, so that edge is not counted)."""
    is_package = path.name == "__init__.py"
    internal, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                external.add(alias.name.split(".")[0])
                if alias.name.startswith("gpugrad"):
                    internal.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
                external.add(target.split(".")[0])
            if target.startswith("gpugrad"):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    internal.add(sub if sub in modules else target)
    return internal & set(modules), external


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(edges):
    """Strongly connected components with more than one module (or a self-import)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        work = [(v, iter(sorted(edges[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == node:
                            break
                    if len(component) > 1 or node in edges[node]:
                        result.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return result


def test_no_import_cycles_among_the_package_modules():
    edges = {name: internal for name, (internal, _) in _graph().items()}
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_cupy_is_imported_only_by_the_cuda_device():
    importers = sorted(name for name, (_, external) in _graph().items()
                       if external & {"cupy", "cupyx", "cupy_backends"})
    assert importers == [CUDA_MODULE]


def test_the_tensor_module_imports_nothing_above_the_device_layer():
    internal, _ = _graph()["gpugrad._tensor"]
    assert internal <= {"gpugrad._device"}
