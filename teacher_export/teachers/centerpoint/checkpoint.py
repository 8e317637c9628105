"""Load an mmdet3d CenterPoint checkpoint into the plain-PyTorch model, without mmcv/mmengine.

Accepted files: a raw state_dict, or mmdet3d's `{'state_dict': ..., 'meta': ..., ...}`; keys may
carry a wrapper prefix (`module.`, `model.`, ...), which is detected and stripped. The file is read
by `detection.weights.read_torch_file` (weights-only): objects of classes we do not have
(mmengine's message hub, numpy scalars in `meta`, ...) become inert placeholders instead of being
imported, so nothing from the file is executed. Every problem is a `UserInputError` naming the file.
"""
from __future__ import annotations

import collections
from pathlib import Path

import torch
from torch import Tensor, nn

from cache_schema.errors import UserInputError
from detection.weights import read_torch_file, state_dict_in

def strip_prefix(sd: dict[str, Tensor], expected: set[str]) -> dict[str, Tensor]:
    """Remove the most common wrapper prefix that turns checkpoint keys into expected keys."""
    votes: collections.Counter[str] = collections.Counter()
    for k in sd:
        if k in expected:
            votes[""] += 1
            continue
        parts = k.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[i:]) in expected:
                votes[".".join(parts[:i]) + "."] += 1
                break
    if not votes:
        return sd
    prefix = votes.most_common(1)[0][0]
    return {(k[len(prefix):] if prefix and k.startswith(prefix) else k): v for k, v in sd.items()}


def _sparse_kernel_layout(tensor: Tensor, expected: torch.Size) -> Tensor:
    """A sparse-conv kernel in the layout the model's spconv modules use.

    spconv 2 stores kernels as (out, kD, kH, kW, in); mmcv's own sparse convs, which mmdet3d uses when
    spconv is not installed, as (kD, kH, kW, in, out). mmdet3d converts the latter on load; so do we,
    by shape (the two layouts coincide only for a kernel whose five sizes are all equal)."""
    if tensor.ndim == 5 and tensor.shape != expected and tensor.permute(4, 0, 1, 2, 3).shape == expected:
        return tensor.permute(4, 0, 1, 2, 3).contiguous()
    return tensor


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state_dict inside a checkpoint file (wrappers such as {'state_dict': ...} removed)."""
    return state_dict_in(read_torch_file(path, "checkpoint", opaque_objects=True), path, "checkpoint")


def load_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Tensor]:
    """Load `path` into `model` with strict key and shape checking; returns the state_dict used."""
    path = Path(path)
    own = model.state_dict()
    sd = strip_prefix(read_state_dict(path), set(own))
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        first = f"missing key '{missing[0]}'" if missing else f"unexpected key '{unexpected[0]}'"
        raise UserInputError(f"checkpoint {path}: {first} ({len(missing)} missing, {len(unexpected)} unexpected; "
                             f"is this a CenterPoint checkpoint for this model config?)")
    for k, v in own.items():
        sd[k] = _sparse_kernel_layout(sd[k], v.shape)
        if sd[k].shape != v.shape:
            raise UserInputError(f"checkpoint {path}: '{k}' has shape {tuple(sd[k].shape)}, the model config "
                                 f"expects {tuple(v.shape)}")
    model.load_state_dict(sd, strict=True)
    return sd
