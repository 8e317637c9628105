"""One check for every `--device` option (export, teachers, train, eval): a device that is not there is
a one-line user error, not a CUDA traceback from deep inside a model; "auto" picks the GPU when there is
one."""
from __future__ import annotations

import torch

from cache_schema.errors import UserInputError


def parse_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1", ...) as a torch.device, whether or not this machine has it (a
    Dask client names the device its workers use)."""
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise UserInputError(f"{option} {name!r}: not a device name (cpu, cuda, cuda:1, ...)") from None


def torch_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1", ...) as a torch.device that exists on this machine."""
    device = parse_device(name, option)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"{option} {name}: no CUDA GPU is available here (torch.cuda.is_available() is "
                                 "False); use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserInputError(f"{option} {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def resolve_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """`torch_device`, where "auto" is cuda when a GPU is available and cpu otherwise."""
    if str(name) == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch_device(name, option)
