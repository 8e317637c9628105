"""DESIGN.md's import rules, checked on every module.

Two stages, export (teacher_export, pipelines on top of it) and training (student), stand on a shared
base (cache_schema, dataset_access, detection) and never import each other; nothing below imports
anything above it; no package imports TensorFlow. And no import cycle anywhere in the packages, also
through imports inside functions (read from the source, so a cycle that happens not to run is caught).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("cache_schema", "dataset_access", "detection", "teacher_export", "pipelines", "student")
STAGES = ("teacher_export", "pipelines", "student")
TEACHER_LIBRARIES = ("mmdet3d", "mmdet", "mmcv", "detectron2")
RULES = {
    "cache_schema": ("torch", "dataset_access", "detection", *STAGES, "tensorflow"),
    "dataset_access": ("torch", "detection", *STAGES, "tensorflow"),
    "detection": (*STAGES, *TEACHER_LIBRARIES, "tensorflow"),
    "teacher_export": ("pipelines", "student", "tensorflow"),
    "pipelines": ("student", "tensorflow"),
    "student": ("teacher_export", "pipelines", *TEACHER_LIBRARIES, "tensorflow"),
}


@pytest.mark.parametrize("package", sorted(RULES))
def test_a_package_imports_only_what_design_allows(package):
    code = f"""
import importlib, pkgutil, sys
import {package}
for m in pkgutil.walk_packages({package}.__path__, "{package}."):
    importlib.import_module(m.name)
bad = sorted({{n.split(".")[0] for n in sys.modules}} & set({RULES[package]!r}))
print(",".join(bad))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"{package} imports {out.stdout.strip()}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the packages it imports anywhere in its source. Importing a.b.c runs
    a/__init__.py and a/b/__init__.py first, so those count too, except the importer's own packages
    (Python has them loaded before the importer runs)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        own = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = own.split(".")
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets.add(base)
                targets |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
        ancestors_of_importer = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
        edges = set()
        for target in targets:
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                prefix = ".".join(parts[:k])
                if prefix in modules and prefix not in ancestors_of_importer and prefix != name:
                    edges.add(prefix)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
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
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere_in_the_packages():
    graph = import_graph()
    assert len(graph) > 100
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_an_import_inside_a_function():
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert cycles(graph) == [["a.x", "a.y", "a.z"]]
    assert cycles({"a.x": {"a.y"}, "a.y": set()}) == []
    # the real graph reads imports inside functions: the student's CLI imports its trainer lazily
    assert "student.train" in import_graph()["student.cli"]


def test_the_stages_never_import_each_other_anywhere_in_their_source():
    graph = import_graph()
    for name, edges in graph.items():
        stage = name.split(".")[0]
        if stage not in STAGES:
            continue
        others = {e.split(".")[0] for e in edges} & (set(STAGES) - {stage} - ({"teacher_export"} if stage == "pipelines"
                                                                             else set()))
        assert not others, f"{name} imports {sorted(others)}"
