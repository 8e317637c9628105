"""Fingerprints that tie a cache, a checkpoint and a dataroot together.

A cache stores image paths relative to the dataroot, so another dataroot with the same file names
(another synthetic seed, another copy of nuScenes with other images) would otherwise train silently on
the wrong pictures. Export records `images_fingerprint` of the samples it wrote; train recomputes it on
the dataroot it is given. Evaluation has no cache: checkpoints record `tables_fingerprint` of the
dataroot's nuScenes tables, which eval recomputes.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable


def file_sha256(path: str | Path) -> str:
    """sha256 of a file (a teacher checkpoint: the teacher identity every cache records)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def images_fingerprint(dataroot: str | Path, relative_paths: Iterable[str]) -> str:
    """sha256 over each image's path relative to the dataroot and its size in bytes (a stat each, no
    reading: a few seconds for nuScenes trainval's 170k camera images). A missing file counts as -1. A
    path with a `#fragment` names a part of a file (a Waymo image inside its Parquet file): the file is
    stat'ed."""
    root = Path(dataroot)
    h = hashlib.sha256()
    for rel in relative_paths:
        try:
            size = os.stat(root / rel.partition("#")[0]).st_size
        except OSError:
            size = -1
        h.update(f"{rel}\t{size}\n".encode())
    return h.hexdigest()


def tables_fingerprint(dataroot: str | Path, version: str) -> str:
    """sha256 over the names and sizes of the version's table files, and the full text of its small
    `scene.json`, `log.json` and `calibrated_sensor.json` (which name the scenes, logs and calibrations)."""
    folder = Path(dataroot) / version
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.json")):
        h.update(f"{path.name}\t{path.stat().st_size}\n".encode())
        if path.name in ("scene.json", "log.json", "calibrated_sensor.json"):
            h.update(path.read_bytes())
    return h.hexdigest()


def first_difference(old: Any, new: Any, path: str = "", old_name: str = "store has",
                     new_name: str = "given") -> str:
    """'key.path: <old_name> a, <new_name> b' for the first key where two JSON values differ (sorted,
    hashes last)."""
    if isinstance(old, dict) and isinstance(new, dict):
        # readable keys (split, names) before hashes, which say only that something differs
        for k in sorted(set(old) | set(new), key=lambda k: (str(k).endswith("sha256"), str(k))):
            if old.get(k) != new.get(k):
                return first_difference(old.get(k), new.get(k), f"{path}.{k}" if path else str(k), old_name, new_name)
    return f"{path or 'value'}: {old_name} {old!r}, {new_name} {new!r}"
