"""The package's layers import downwards only (docs/architecture.md).

Every import in vsock_fuzz/, at module level or inside a function, is read
with `ast`; an import of a higher layer from a lower one fails the test.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vsock_fuzz"

# Bottom to top; a module may import its own layer and those below it.
LAYERS = ("case", "model", "targets", "oracles", "engines", "cli")
# The zoo's devices are targets; the top-level re-exports, __init__ and __main__ stand above everything.
SAME_AS = {"zoo": "targets"}
TOP = len(LAYERS)


def layer_of(module: str) -> int:
    """The rank of a vsock_fuzz module (dotted name) in LAYERS."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__version__":
        return -1  # the package's version, importable from anywhere
    name = SAME_AS.get(parts[1], parts[1])
    return LAYERS.index(name) if name in LAYERS else TOP


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(source: str, module: str, is_package: bool):
    """(line, imported vsock_fuzz module) for every import in the source."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "vsock_fuzz":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "vsock_fuzz":
                continue
            for alias in node.names:
                # `from X import y` imports module X.y when there is one (from vsock_fuzz: also __version__)
                sub = f"{target}.{alias.name}"
                yield node.lineno, sub if target == "vsock_fuzz" or is_module(sub) else target


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    mine = layer_of(module)
    return [f"{module}:{line} imports {target}" for line, target in imports(source, module, is_package)
            if layer_of(target) > mine]


def package_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, module_name(path)


def test_every_module_has_a_layer():
    for path, module in package_modules():
        parts = module.split(".")
        if len(parts) > 2 or (len(parts) == 2 and path.name == "__init__.py"):
            assert layer_of(module) < TOP, f"{module} is in no layer of docs/architecture.md"


def test_imports_point_down_the_layers():
    bad = []
    for path, module in package_modules():
        bad += upward_imports(path.read_text(), module, path.name == "__init__.py")
    assert not bad, "\n".join(bad)


def import_graph() -> dict[str, set[str]]:
    """Each module of vsock_fuzz -> the modules of vsock_fuzz it imports, anywhere in its source.

    Importing a.b.c runs a/b/__init__ first; that implicit edge is left out, or every package
    whose __init__ re-exports its modules would import itself back."""
    graph = {module: {t for _, t in imports(path.read_text(), module, path.name == "__init__.py")}
             for path, module in package_modules()}
    return {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The groups of modules that import each other, directly or through others."""
    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for t in graph[todo.pop()] - seen:
                seen.add(t)
                todo.append(t)
        return seen
    reached = {m: reach(m) for m in graph}
    return sorted({tuple(sorted(n for n in reached[m] if m in reached[n])) for m in graph if m in reached[m]})


def test_no_module_imports_itself_back():
    """Imports inside functions and under TYPE_CHECKING count: they only hide a cycle, and the
    modules in one still cannot be read, tested or moved apart."""
    found = cycles(import_graph())
    assert not found, "modules that import each other: " + "; ".join(" <-> ".join(c) for c in found)


def test_a_cycle_through_another_module_or_type_checking_is_caught():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]
    assert cycles({"a": {"b"}, "b": set()}) == []
    source = "if TYPE_CHECKING:\n    from .campaign import Options\ndef f():\n    from . import summary\n"
    assert [t for _, t in imports(source, "vsock_fuzz.engines.pool", False)] == [
        "vsock_fuzz.engines.campaign", "vsock_fuzz.engines.summary"]


@pytest.mark.parametrize("module,source", [
    ("vsock_fuzz.case.binary", "from ..model.chain import walk\n"),
    ("vsock_fuzz.model.packet", "def f():\n    from ..oracles import check\n"),
    ("vsock_fuzz.targets.command", "import vsock_fuzz.engines.percase\n"),
    ("vsock_fuzz.oracles.safety", "from vsock_fuzz.cli import report\n"),
    ("vsock_fuzz.case.value", "from .. import layout\n"),  # the top-level re-export stands above every layer
])
def test_an_upward_import_is_caught(module, source):
    assert upward_imports(source, module) != []


@pytest.mark.parametrize("module,source", [
    ("vsock_fuzz.engines.check", "from ..oracles import evaluate\nfrom ..case.layout import assemble\n"),
    ("vsock_fuzz.model.chain", "from ..case.wire import DESC_SIZE\nfrom .memory import GuestMemory\n"),
    ("vsock_fuzz.targets.command", "from .. import __version__\n"),
    ("vsock_fuzz.zoo.region_end", "from ..targets.serve import serve\n"),
])
def test_a_downward_import_is_allowed(module, source):
    assert upward_imports(source, module) == []


def test_architecture_doc_names_every_layer_package():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for name in (*LAYERS, "zoo"):
        assert (PACKAGE / name / "__init__.py").exists(), name
        assert f"`vsock_fuzz/{name}/`" in doc, f"docs/architecture.md does not describe {name}/"


def test_every_target_plumbing_module_stays_out_of_coverage():
    """The per-case path's plumbing makes no decision about the input: a new targets module left
    instrumented would slow every worker (engines/percase.py, UNINSTRUMENTED)."""
    from vsock_fuzz.engines.percase import UNINSTRUMENTED
    plumbing = {module_name(p) for p in (PACKAGE / "targets").glob("*.py")} - {"vsock_fuzz.targets.serve"}
    assert plumbing <= set(UNINSTRUMENTED), sorted(plumbing - set(UNINSTRUMENTED))
