"""BEVDepth checkpoints in and out: its Lightning `state_dict` names <-> this student's.

BEVDepth (Megvii's `BaseBEVDepth` inside a Lightning module) names its weights
`model.backbone.{img_backbone, img_neck, depth_net, depth_aggregation_net}.*` and
`model.head.{trunk, neck, shared_conv, task_heads}.*`. This student holds the same modules with the same
inner names where it could (ResNet stages, SECONDFPN deblocks, the whole depth net incl. ASPP and the
deformable conv, depth aggregation, CenterHead), so the map is a handful of prefix rules; the ResNet
stems (BEVDepth's `conv1`/`bn1`, ours `stem.0`/`stem.1`) and the BEV trunk's stages are renamed. The
student must be built with BEVDepth's parts (`configs/bevdepth_*.yaml`): a checkpoint whose keys or
shapes do not fit is one line naming the first bad key. BEVDepth's geometry buffers (frustum, voxel
size / coordinate / count) are recomputed from the config, not read.
"""
from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor, nn

from cache_schema.errors import UserInputError

from detection.weights import read_torch_file, save_atomic, state_dict_in

# (BEVDepth prefix, ours); the longest matching prefix wins, in either direction. Keys without the
# Lightning "model." prefix.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("backbone.img_backbone.conv1.", "image_backbone.stem.0."),
    ("backbone.img_backbone.bn1.", "image_backbone.stem.1."),
    ("backbone.img_backbone.", "image_backbone."),
    ("backbone.img_neck.deblocks.", "image_backbone.deblocks."),
    ("backbone.depth_net.", "depth_net."),
    ("backbone.depth_aggregation_net.", "view_transform.depth_aggregation."),
    ("head.trunk.conv1.", "bev_encoder.stem.0."),
    ("head.trunk.bn1.", "bev_encoder.stem.1."),
    ("head.neck.deblocks.", "bev_encoder.deblocks."),
    ("head.", "head."),
)
_TRUNK_LAYER = re.compile(r"^head\.trunk\.layer(\d+)\.")  # mmdet ResNet layer{i} (1-based) -> stages.{i-1}
_OUR_STAGE = re.compile(r"^bev_encoder\.stages\.(\d+)\.")
# BEVDepth's non-weight buffers: the frustum and the voxel grid, which our config determines
_GEOMETRY_BUFFERS = ("backbone.frustum", "backbone.voxel_size", "backbone.voxel_coord", "backbone.voxel_num")


def bevdepth_key_to_ours(key: str) -> str | None:
    """Our name of a BEVDepth state_dict key (with or without the Lightning "model." prefix); None for
    BEVDepth's geometry buffers; the key itself when no rule applies (reported as unexpected)."""
    key = key.removeprefix("model.")
    if key in _GEOMETRY_BUFFERS:
        return None
    m = _TRUNK_LAYER.match(key)
    if m:
        return f"bev_encoder.stages.{int(m.group(1)) - 1}." + key[m.end():]
    for theirs, ours in sorted(_PREFIXES, key=lambda p: -len(p[0])):
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return key


def our_key_to_bevdepth(key: str) -> str:
    """The Lightning state_dict name BEVDepth gives the weight we call `key`."""
    m = _OUR_STAGE.match(key)
    if m:
        return f"model.head.trunk.layer{int(m.group(1)) + 1}." + key[m.end():]
    for theirs, ours in sorted(_PREFIXES, key=lambda p: -len(p[1])):
        if key.startswith(ours):
            return "model." + theirs + key[len(ours):]
    return "model." + key


def to_bevdepth_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """`model`'s weights under BEVDepth's names (what its Lightning checkpoints hold under "state_dict")."""
    return {our_key_to_bevdepth(k): v for k, v in model.state_dict().items()}


def is_bevdepth_state(obj: object) -> bool:
    """Whether a loaded file holds BEVDepth's weights (its Lightning names), not an x3kd checkpoint."""
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    return isinstance(state, dict) and any(str(k).removeprefix("model.").startswith("backbone.img_backbone.")
                                           for k in state)


def load_bevdepth_weights(model: nn.Module, path: str | Path, loaded: object = None) -> None:
    """Load a BEVDepth checkpoint (Lightning file, or a bare state_dict under its names) into `model`,
    strictly: every weight of the model present with its shape, nothing left over. `loaded`: the file's
    content when the caller has read it already."""
    if loaded is None:
        loaded = read_torch_file(path, "BEVDepth checkpoint", opaque_objects=True)
    source = state_dict_in(loaded, path, "BEVDepth checkpoint")
    own = model.state_dict()
    mapped: dict[str, Tensor] = {}
    for key, value in source.items():
        ours = bevdepth_key_to_ours(key)
        if ours is None:
            continue
        if ours not in own:
            raise UserInputError(f"BEVDepth checkpoint {path}: key '{key}' has no counterpart in this student "
                                 "(is the config one of configs/bevdepth_*.yaml?)")
        if tuple(value.shape) != tuple(own[ours].shape):
            raise UserInputError(f"BEVDepth checkpoint {path}: '{key}' has shape {tuple(value.shape)}, the student "
                                 f"expects {tuple(own[ours].shape)} for '{ours}' (another config?)")
        mapped[ours] = value
    missing = [k for k in own if k not in mapped]
    if missing:
        raise UserInputError(f"BEVDepth checkpoint {path}: no '{our_key_to_bevdepth(missing[0])}' for the student's "
                             f"'{missing[0]}' ({len(missing)} missing)")
    model.load_state_dict(mapped, strict=True)


def save_as_bevdepth(model: nn.Module, path: str | Path) -> None:
    """Write `model` as a BEVDepth-style Lightning checkpoint ({"state_dict": ...})."""
    save_atomic({"state_dict": to_bevdepth_state_dict(model)}, path)


__all__ = ["bevdepth_key_to_ours", "load_bevdepth_weights", "our_key_to_bevdepth", "save_as_bevdepth",
           "to_bevdepth_state_dict"]
