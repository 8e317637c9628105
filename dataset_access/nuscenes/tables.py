"""nuScenes tables through nuscenes-devkit: open a dataroot, select a split's key frames, read poses.

The one place that turns a (dataroot, version, split) into sample tokens, for `NuScenesSamples`
(samples.py), which the export, teacher fitting, evaluation and scoring all read a dataroot through.
Samples come in the split's scene order, then by time. Training reads everything from the cache and
never comes here.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from cache_schema.errors import UserInputError
from cache_schema.frames import make_transform


LIDAR_NAME = "LIDAR_TOP"
TABLE_NAMES: tuple[str, ...] = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor",
                                "ego_pose", "log", "scene", "sample", "sample_data", "sample_annotation", "map")
# Which dataroot version a predefined split needs (the devkit's DetectionEval asserts the same suffixes).
SPLIT_VERSION_SUFFIX = {"train": "trainval", "val": "trainval", "train_detect": "trainval",
                        "train_track": "trainval", "mini_train": "mini", "mini_val": "mini", "test": "test"}


def pose(record: dict) -> np.ndarray:
    """4x4 float64 transform of a nuScenes `calibrated_sensor` (sensor -> ego) or `ego_pose` (ego ->
    global) record."""
    return make_transform(record["rotation"], record["translation"])


def check_dataroot(dataroot: str | Path, version: str) -> None:
    """What the devkit would assert on, as one-line errors naming the path."""
    root = Path(dataroot)
    if not root.is_dir():
        raise UserInputError(f"{root}: nuScenes dataroot not found")
    table_root = root / version
    if not table_root.is_dir():
        found = sorted(p.name for p in root.iterdir() if (p / "scene.json").is_file())
        raise UserInputError(f"{table_root}: no tables for version {version!r} "
                             f"(versions here: {', '.join(found) or 'none'})")
    for name in TABLE_NAMES:
        if not (table_root / f"{name}.json").is_file():
            raise UserInputError(f"{table_root / f'{name}.json'}: nuScenes table missing")
    try:
        maps = json.loads((table_root / "map.json").read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"{table_root / 'map.json'}: not valid JSON ({e})") from None
    for rec in maps:
        if not (root / rec.get("filename", "")).is_file():
            raise UserInputError(f"{root / rec.get('filename', '')}: map image missing")


def open_nuscenes(dataroot: str | Path, version: str):
    """nuscenes-devkit's NuScenes for `dataroot`/`version`, with one-line errors for bad paths."""
    check_dataroot(dataroot, version)
    from nuscenes.nuscenes import NuScenes

    root = Path(dataroot)
    # The devkit prints progress even with verbose=False in places, and asserts on bad tables.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return NuScenes(version=version, dataroot=str(root), verbose=False)
    except (AssertionError, KeyError, ValueError, TypeError, IndexError, FileNotFoundError) as e:
        raise UserInputError(f"{root / version}: nuscenes-devkit cannot load the tables "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def split_scene_names(dataroot: str | Path, version: str, split: str) -> list[str]:
    """Scene names of a predefined nuScenes split (it must suit the version) or of a custom split in
    `<dataroot>/<version>/splits.json` ({split: [scene names]})."""
    from nuscenes.utils.splits import create_splits_scenes

    predefined = create_splits_scenes()
    if split in predefined:
        suffix = SPLIT_VERSION_SUFFIX.get(split)
        if suffix and not version.endswith(suffix):
            raise UserInputError(f"split {split!r} needs a *-{suffix} version, not {version!r}")
        return list(predefined[split])
    custom = Path(dataroot) / version / "splits.json"
    if custom.is_file():
        try:
            splits = json.loads(custom.read_text())
        except json.JSONDecodeError as e:
            raise UserInputError(f"{custom}: not valid JSON ({e})") from None
        if split in splits:
            return list(splits[split])
    raise UserInputError(f"split {split!r}: not a nuScenes split ({', '.join(sorted(predefined))}) nor in {custom}")


def split_sample_tokens(nusc, split: str) -> list[str]:
    """Key-frame tokens of the split's scenes present in this dataroot (v1.0-mini and synthetic data
    hold part of a split), in scene order then by time."""
    by_name = {s["name"]: s for s in nusc.scene}
    tokens: list[str] = []
    for name in split_scene_names(nusc.dataroot, nusc.version, split):
        scene = by_name.get(name)
        if scene is None:
            continue
        token, samples = scene["first_sample_token"], []
        while token:
            rec = nusc.get("sample", token)
            samples.append(rec)
            token = rec["next"]
        tokens.extend(s["token"] for s in sorted(samples, key=lambda s: s["timestamp"]))
    if not tokens:
        raise UserInputError(f"{Path(nusc.dataroot) / nusc.version}: no scene of split {split!r} in this dataroot")
    return tokens

