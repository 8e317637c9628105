"""Reading and writing weight files: the one place that opens a user's `.pt`/`.pth` and the one atomic save.

A user's file is data, never code: every read is `torch.load(weights_only=True)`, so a pickle that would
import or call anything but tensors and plain containers is refused before anything runs. Every problem
is one `UserInputError` line naming the file. The teachers' loaders, teacher fitting and the student's checkpoints, backbone weights and resume all
come here.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cache_schema.errors import UserInputError


class _Opaque:
    """Stands in for a pickled object whose class is not allowed; swallows its arguments and state."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


def read_torch_file(path: str | Path, what: str, *, opaque_objects: bool = False) -> Any:
    """The content of a PyTorch file `path` (a `what`: "checkpoint", "backbone weights", ...) on the CPU.

    `opaque_objects`: objects of classes outside torch's weights-only allow-list (mmengine's message hub,
    numpy scalars in an mmdet3d `meta`) load as inert placeholders instead of being refused; nothing of
    theirs is imported or run. Without it such a file is refused, naming what it asks for."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{what} {p}: no such file")
    if not zipfile.is_zipfile(p):
        raise UserInputError(f"{what} {p}: not a readable PyTorch checkpoint (not a PyTorch zip file)")
    placeholders = []
    if opaque_objects:
        try:
            placeholders = [(_Opaque, name) for name in torch.serialization.get_unsafe_globals_in_checkpoint(str(p))]
        except Exception as e:  # noqa: BLE001  (a damaged zip: the user's input problem)
            raise UserInputError(f"{what} {p}: not a readable PyTorch checkpoint ({_first_line(e)})") from None
    try:
        with warnings.catch_warnings():
            # A damaged file can make the unpickler warn before it fails; the error below says it all.
            warnings.simplefilter("ignore", UserWarning)
            with torch.serialization.safe_globals(placeholders):
                return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserInputError(f"{what} {p}: refused: not weights-only (loading it would run code from the file, not "
                             f"just read tensors and plain values: {_unsafe_global(e)}); save the state_dict alone") \
            from None
    except Exception as e:  # noqa: BLE001  (torch raises many kinds for a corrupt zip or pickle)
        raise UserInputError(f"{what} {p}: not a readable PyTorch checkpoint ({_first_line(e)})") from None


def state_dict_in(obj: Any, path: str | Path, what: str) -> dict[str, Tensor]:
    """The state_dict of tensors in a loaded file: bare, or wrapped under "state_dict", "model" or
    "module" (what mmdet3d, torchvision's and most training scripts save); DDP's "module." prefix is
    stripped. Anything else is a `UserInputError` naming the file."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise UserInputError(f"{what} {path}: holds no state_dict (expected a dict of tensors or "
                             f"{{'state_dict': dict of tensors}})")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same directory, then rename: a crash never leaves a
    truncated file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _unsafe_global(e: Exception) -> str:
    """The global torch's weights_only unpickler stopped at, from its long message."""
    m = re.search(r"GLOBAL ([\w.]+)", str(e))
    return f"it asks for {m.group(1)}" if m else type(e).__name__
