"""Load an mmdet3d CenterPoint checkpoint into the plain-PyTorch model, without mmcv/mmengine.

Accepted files: a raw state_dict, or mmdet3d's `{'state_dict': ..., 'meta': ..., ...}`; keys may
carry a wrapper prefix (`module.`, `model.`, ...), which is detected and stripped. The file is read
with `torch.load(weights_only=True)`: objects of classes we do not have (mmengine's message hub,
numpy scalars in `meta`, ...) are replaced by inert placeholders instead of being imported, so
nothing from the file is executed. Every problem is a `UserInputError` naming the file.
"""
from __future__ import annotations

import collections
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from cache_schema.errors import UserInputError

log = logging.getLogger(__name__)


class _Opaque:
    """Stands in for any pickled object whose class is not allowed; swallows its arguments/state."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


def _read(path: Path) -> object:
    try:
        with torch.serialization.safe_globals([]):
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as e:  # not a torch zip file (or a legacy pickle, which we refuse)
        raise UserInputError(f"checkpoint {path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
    stubs = [(_Opaque, name) for name in unsafe]
    if stubs:
        log.debug("checkpoint %s: replacing non-tensor objects %s with placeholders", path, unsafe)
    try:
        with torch.serialization.safe_globals(stubs):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserInputError(f"checkpoint {path}: cannot be loaded ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None


def _state_dict_of(obj: object, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise UserInputError(f"checkpoint {path}: holds no state_dict (expected a dict of tensors or "
                             f"{{'state_dict': dict of tensors}})")
    return {str(k): v for k, v in obj.items()}


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
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"checkpoint {path}: no such file")
    return _state_dict_of(_read(path), path)


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
