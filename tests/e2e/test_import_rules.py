"""DESIGN.md's import rules, checked on every module: cache_schema never imports torch or a stage,
teacher_export never imports pipelines, the student never imports teacher_export or pipelines."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = {
    "cache_schema": ("torch", "teacher_export", "pipelines", "student"),
    "teacher_export": ("pipelines",),
    "student": ("teacher_export", "pipelines", "mmdet3d", "detectron2"),
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
