"""A training run's directory: what it holds, its one rule (one run per directory), its checkpoint files
and the RNG states a checkpoint carries for exact resume."""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache_schema.errors import UserInputError
from detection.weights import read_torch_file

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
RUN_FILES = ("config.yaml", "train_summary.json", "cache_validated.json")
RUN_DIRS = (CHECKPOINT_DIR, "tensorboard")


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to mix two runs in one directory: without --resume, a directory that holds a run is
    refused (its checkpoints would be deleted by the keep-newest rule, its TensorBoard events mixed)
    unless --overwrite says to delete that run first."""
    if resume:
        if overwrite:
            raise UserInputError("--resume and --overwrite contradict each other; give one")
        return
    found = [n for n in RUN_DIRS if (out / n).is_dir() and any((out / n).iterdir())]
    found += [n for n in RUN_FILES if (out / n).is_file()] + [p.name for p in sorted(out.glob("samples_rank*.jsonl"))]
    if not found:
        return
    if not overwrite:
        raise UserInputError(f"--out {out}: already holds a run ({', '.join(found[:3])}); continue it with --resume, "
                             "train into a new --out, or replace it with --overwrite")
    import shutil

    for n in RUN_DIRS:
        shutil.rmtree(out / n, ignore_errors=True)
    for n in found:
        if (out / n).is_file():
            (out / n).unlink()
    log.info("--overwrite: removed the previous run in %s", out)


def checkpoint_path(out: Path, step: int) -> Path:
    return out / CHECKPOINT_DIR / f"step_{step:07d}.pt"


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / CHECKPOINT_DIR).glob("step_*.pt"))
    return found[-1] if found else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by `train` (on the CPU); a missing, unreadable or foreign file is a one-line
    UserInputError."""
    ckpt = read_torch_file(path, "checkpoint")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UserInputError(f"checkpoint {path}: not an x3kd student checkpoint")
    return ckpt


def rng_state() -> dict[str, Any]:
    """Every RNG's state in plain values and tensors (no numpy objects), so that checkpoints load with
    `torch.load(weights_only=True)`."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                     int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(v: Any) -> Any:
    """random.setstate wants the nested tuples getstate gave (a checkpoint may hand back lists)."""
    return tuple(_tuples(x) for x in v) if isinstance(v, (list, tuple)) else v


def release_checkpoint(checkpoint: str | Path, out: str | Path, use_ema: bool = True) -> dict[str, Any]:
    """Write what a trained student is, without what resuming its run needs: its inference weights (the
    EMA's when the run kept one) in float16, its config, step and provenance, and where it came from.
    `x3kd-student eval` and `train.init_from` read it like any checkpoint; it is a fraction of the size
    (no optimizer state, no training-only heads). Returns the written dict."""
    from cache_schema.identity import file_sha256
    from detection.weights import save_atomic

    ckpt = load_checkpoint(checkpoint)
    ema = use_ema and ckpt.get("ema") is not None
    weights = ckpt["ema"] if ema else ckpt["model"]
    # floating weights in half precision; integer buffers (BatchNorm's batch counts) as they are
    half = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    released = {"model": half, "ema": None, "step": int(ckpt.get("step", 0)), "config": ckpt["config"],
                "provenance": ckpt.get("provenance"),
                "released_from": {"path": Path(checkpoint).name, "sha256": file_sha256(checkpoint), "ema": ema}}
    save_atomic(released, out)
    return released
