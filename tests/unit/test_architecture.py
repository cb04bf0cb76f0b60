"""The shape of the code, checked from its source: layers, cycles, local imports, sizes.

ARCHITECTURE.md explains the layers; these tests keep the code matching it.
They read the source with ``ast`` only: nothing is imported or run.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ocrq", "web", "workers")

# Top to bottom: a unit may import its own modules and those of lower layers only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("ocrq.__main__",),
    ("ocrq.cli", "ocrq.chaos"),
    ("web", "workers", "ocrq.localcluster", "ocrq.suite"),
    ("ocrq.pipeline",),
    ("ocrq.observability",),
    ("ocrq.cluster", "ocrq.evaluation"),
    ("ocrq.plugin_stages",),
    ("ocrq.engine", "ocrq.plans"),
    ("ocrq.stages",),
    ("ocrq.models",),
    ("ocrq.documents",),
    ("ocrq.storage", "ocrq.webhooks", "ocrq.images", "ocrq.plugins"),
    ("ocrq.settings", "ocrq.errors", "ocrq.document", "ocrq.names", "ocrq"),
)
# Imported inside a function on purpose: optional or heavy, paid only when used.
LAZY_OK = {"torch", "wordfreq", "onnx", "onnxruntime", "rapidocr_onnxruntime",
           "ocrq.models.runtimes.torch"}
MAX_FILE_LINES = 350
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the project module (or third-party top-level name) imported
    line: int
    local: bool  # inside a function
    commented: bool  # a comment on its line or the line above


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_pkg: bool,
             known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = module.split(".") if is_pkg else module.split(".")[:-1]
            pkg = pkg[: len(pkg) - node.level + 1]
            base = ".".join([*pkg, base] if base else pkg)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                 for a in node.names]
    out = []
    for name in names:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        out.append(name)
    return out


def _imports() -> list[Import]:
    sources = _sources()
    known = set(sources)
    found: list[Import] = []
    for module, path in sources.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text)
        local_nodes = {id(n) for f in ast.walk(tree)
                       if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                       for n in ast.walk(f) if isinstance(n, ast.Import | ast.ImportFrom)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2] if node.lineno > 1 else ""
            commented = "#" in here or above.strip().startswith("#")
            for target in _targets(node, module, path.name == "__init__.py", known):
                found.append(Import(module, target, node.lineno, id(node) in local_nodes,
                                    commented))
    return found


def _unit(module: str) -> str | None:
    """The layer unit a project module belongs to (longest listed prefix)."""
    units = [u for layer in LAYERS for u in layer]
    # "ocrq" is the package's own __init__ only: a new top-level module must be listed.
    matches = [u for u in units if module == u or (u != "ocrq" and module.startswith(u + "."))]
    return max(matches, key=len) if matches else None


def _layer(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _project(target: str) -> bool:
    return target.split(".")[0] in PACKAGES


def test_every_module_belongs_to_a_layer() -> None:
    assert [m for m in _sources() if _unit(m) is None] == []


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for imp in _imports():
        if not _project(imp.target):
            continue
        src, dst = _unit(imp.module), _unit(imp.target)
        assert src is not None and dst is not None
        if src != dst and _layer(dst) <= _layer(src):
            wrong.append(f"{imp.module}:{imp.line} imports {imp.target} ({src} -> {dst})")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in _imports():
        if _project(imp.target) and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(_sources()):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_function_local_imports_only_for_optional_heavy_dependencies() -> None:
    bad = [f"{i.module}:{i.line} imports {i.target}" + ("" if i.commented else " (no comment)")
           for i in _imports() if i.local
           and (not i.commented or (i.target not in LAZY_OK
                                    and i.target.split(".")[0] not in LAZY_OK))]
    assert not bad, "\n".join(bad)


def test_product_files_and_functions_stay_small() -> None:
    too_long: list[str] = []
    for module, path in _sources().items():
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n >= MAX_FILE_LINES:
            too_long.append(f"{module}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}.{node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


@pytest.mark.parametrize("code, expected", [
    ("import ocrq.engine\n", ["ocrq.engine"]),
    ("from ocrq.pipeline import canvas\n", ["ocrq.pipeline.canvas"]),
    ("from . import work\n", ["ocrq.pipeline.work"]),
    ("from ocrq.storage import JobStatus\n", ["ocrq.storage"]),
])
def test_import_resolution(code: str, expected: list[str]) -> None:
    """The checks above are only as good as this: names resolve to the right modules."""
    node = ast.parse(code).body[0]
    assert isinstance(node, ast.Import | ast.ImportFrom)
    assert _targets(node, "ocrq.pipeline.tasks", False, set(_sources())) == expected


def test_test_files_have_unique_names() -> None:
    """tests/unit and tests/integration are not packages: pytest imports test modules
    by basename, and two with the same name stop the whole collection."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
