"""`x3kd-student train`: one readable training loop (nanoGPT-style) over the teacher cache.

    cfg = load_train_config("configs/tiny.yaml", ["loss.xfd.weight=0.5"])
    train(cache="cache.zarr", dataroot="data/nuscenes", cfg=cfg, out="runs/tiny")

What a step does, in order: take the next batch of this rank's share of the samples, forward the
student, compute every enabled loss term (X3KDLoss also owns the X-FD adapter, X-AT discriminator and
X-IS heads), backward, clip gradients, AdamW step, learning-rate schedule step, EMA update, log, and
every `checkpoint_every` steps (and at the end) write a checkpoint atomically.

Distributed: run under `torchrun --nproc_per_node K` (gloo on CPU, nccl on GPU); without torchrun it is
one process. Each rank reads a disjoint part of every epoch (DistributedSampler's partition); DDP
averages gradients, so all ranks hold the same weights.

Exact resume: a checkpoint holds the model, criterion, optimizer, scheduler, EMA and AMP scaler states,
the step, the RNG states (python, numpy, torch) and the config. The sampler position is a function of
the step (epoch = step // steps_per_epoch), the augmentation of a sample is seeded by (seed, epoch,
sample index), and the DataLoader draws its worker seeds from its own generator, so `--resume`
continues bit-for-bit as the uninterrupted run would (deterministic CPU mode).

This module never imports `teacher_export`: the teachers' knowledge arrives through the cache only.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from cache_schema.errors import UserInputError
from cache_schema.lease import Lease
from detection.weights import read_torch_file, save_atomic

from .batch import StudentBatch
from .config import StudentConfig
from .data.dataset import CacheDataset, collate, open_cache
from .losses import X3KDLoss, total_loss
from .models.student import BevStudent, StudentOutputs, build_student
from .provenance import check_resume_config, check_same_cache, run_provenance
from .run_dir import (CHECKPOINT_DIR, checkpoint_path, latest_checkpoint, load_checkpoint, prepare_run_dir,
                      rng_state, set_rng_state)
from .train_config import OptimConfig, RunConfig, TrainConfig

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- helpers ---

class StudentWithCriterion(nn.Module):
    """The student and its criterion as one module, so DDP synchronises the gradients of both (the
    X-FD adapter, X-AT discriminator and X-IS heads train too)."""

    def __init__(self, model: BevStudent, criterion: X3KDLoss) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion
        # Set before a step whose intermediates are to be drawn; they are kept in `outputs` until taken.
        self.keep_outputs = False
        self.outputs: StudentOutputs | None = None

    def forward(self, batch: StudentBatch) -> dict[str, torch.Tensor]:
        out = self.model(batch)
        self.outputs = out if self.keep_outputs else None
        return self.criterion(out, batch)


class EpochSampler(DistributedSampler):
    """DistributedSampler (shuffled with seed + epoch, rank r takes every world-th index, tail dropped so
    ranks never share a sample) that can start part-way into the epoch, for exact resume. It yields
    (epoch, index) keys: the dataset draws a sample's augmentation from them, so persistent workers
    need not be told about a new epoch."""

    def __init__(self, n: int, world: int, rank: int, seed: int) -> None:
        super().__init__(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        return iter([(self.epoch, i) for i in list(super().__iter__())[self.start:]])

    def __len__(self) -> int:
        return self.num_samples - self.start


class StopSignal:
    """SIGINT (Ctrl-C) and SIGTERM (a cluster's pre-emption notice) ask the loop to stop after the
    current step, so that a checkpoint of that step can be written; a second signal stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s: stopping after this step and writing a checkpoint (again to stop at once)",
                    signal.Signals(signum).name)

    def requested(self, info: DistInfo) -> bool:
        """Whether to stop now; under DDP every rank must agree, or the checkpoint's collectives hang."""
        flag = self.signum is not None
        if info.world > 1:
            t = torch.tensor([float(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
            if flag and self.signum is None:
                self.signum = int(signal.SIGTERM)
        return flag

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def teacher_feature_statistics(reader: Any, cfg: StudentConfig, url: str
                               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per-channel mean and std of the teacher BEV features over the training samples, for
    loss.xfd.standardize (None, None when it is off)."""
    if not cfg.losses.xfd.standardize:
        return None, None
    from cache_schema.statistics import channel_mean_std
    from cache_schema.views import LidarTeacherMaps

    try:
        stats = reader.select([LidarTeacherMaps.GROUP])
        sums = stats.column(LidarTeacherMaps, "bev_features_sum")
        sqsums = stats.column(LidarTeacherMaps, "bev_features_sqsum")
    except KeyError:
        raise UserInputError(f"{url}: loss.xfd.standardize needs the teacher feature statistics that exports of "
                             f"schema 1.1 store (this store is {reader.meta.schema_version}); re-export, or set "
                             "loss.xfd.standardize=false") from None
    h, w = reader.config.grid.shape
    mean, std = channel_mean_std(sums, sqsums, h * w)
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def _validate_once(cache: str, reader: Any, out: Path, storage_options: dict | None, info: DistInfo,
                   progress: bool) -> None:
    """Read every chunk of the store (checksums) before the first training on it since its last export
    run, so a corrupt sample stops training before it starts, named, with the repair command. The run
    directory remembers which export state was validated, so resuming does not read it all again."""
    from cache_schema.validate import validate

    marker = out / "cache_validated.json"
    runs = len(reader.meta.runs)
    stamp = {"cache": str(cache), "export_runs": runs}
    message = None
    if info.main:
        if not (marker.is_file() and json.loads(marker.read_text()) == stamp):
            report = validate(cache, storage_options=storage_options, progress=progress)
            problems = report.store_problems + [str(p) for p in report.corrupt + report.missing]
            if problems:
                message = (f"{cache}: {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
                           + "; re-export the bad samples with `x3kd-cache export --repair` and the export's options "
                             f"(`x3kd-cache validate {cache}` lists them)")
            else:
                out.mkdir(parents=True, exist_ok=True)
                marker.write_text(json.dumps(stamp))
    if info.world > 1:
        box = [message]
        dist.broadcast_object_list(box, src=0)
        message = box[0]
    if message:
        raise UserInputError(message)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
                    ) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=max(total_steps, 2),
                                                   pct_start=max(cfg.warmup_steps / max(total_steps, 1), 0.01))

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "multistep":
            return cfg.gamma ** sum(step >= round(m * total_steps) for m in cfg.milestones)
        t = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EMA:
    """Exponential moving average of the student's weights (buffers are copied), with the warm-up
    BEVDepth and YOLOX use: the decay after n updates is `decay * (1 - exp(-n / warmup))`. Without it
    the average starts at the random init with the full decay, and at 0.9999 over ~10k steps a third of
    the evaluated weights would still be the init (and the score would depend on the world size)."""

    def __init__(self, model: nn.Module, decay: float, updates: int = 0, warmup: float = 2000.0) -> None:
        self.decay = decay
        self.updates = updates
        self.warmup = warmup
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.warmup))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _worker_message(e: Exception) -> str:
    text = str(e).strip()
    if "Original Traceback" not in text:
        return text
    return text.splitlines()[-1].split(": ", 1)[-1]


def weights_sha256(module: nn.Module) -> str:
    """sha256 over every parameter of `module`. Buffers are left out: BatchNorm running statistics are
    per rank under DDP (each rank normalises its own batch; the checkpoint keeps rank 0's)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in module.named_parameters():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _resolve_device(kind: str, info: DistInfo) -> torch.device:
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError("config train.device: cuda requested but no GPU is available")
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device(kind)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU. The trainer's only host sync outside
    what a step's own values need, taken on logging steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------- train ---

class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived: a checkpoint of the step reached was written (`checkpoint`)."""

    def __init__(self, signum: int, step: int, total: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted ({signal.Signals(signum).name}) at step {step} of {total}; checkpoint "
                         f"{checkpoint} written: run the same command with --resume to continue")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


def train(cache: str, dataroot: str | Path | None, cfg: TrainConfig, out: str | Path, *, resume: bool = False,
          overwrite: bool = False, storage_options: dict | None = None, progress: bool = True,
          quiet: bool = False, report: Callable[[str], None] = log.info) -> Path:
    """Train the student on the cache at `cache`; returns the final checkpoint's path.

    `out` must not hold another run unless `resume` (continue it) or `overwrite` (delete it first).
    `dataroot` holds the camera student's JPEGs; the radar student reads nothing but the cache (None).
    SIGINT/SIGTERM write a checkpoint of the step reached and raise `TrainingInterrupted`. `report` gets
    one paragraph before the first step: the device, the samples and steps, the run directory, and on
    `resume` the step it continues from."""
    out = Path(out)
    if dataroot is None and cfg.student.modality == "camera":
        raise UserInputError("--dataroot: required for the camera student, which reads the camera JPEGs from it")
    if cfg.train.deterministic:
        # cuBLAS reads this when CUDA initialises; deterministic GEMMs need it.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    kind = cfg.train.device if cfg.train.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    info = init_distributed(kind)
    device = _resolve_device(kind, info)
    rc = cfg.train
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    # One run per directory: rank 0 holds the run directory's lease from before it looks at what the
    # directory holds until the run ends, so a second `train` into the same --out is refused, not mixed in.
    lease = Lease(str(out), "run directory", label=f"--out {out}") if info.main else None
    try:
        if lease is not None:
            lease.acquire()
        if rc.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        if info.main:
            prepare_run_dir(out, resume, overwrite)
        if info.world > 1:
            dist.barrier()
        return _train(cache, dataroot, cfg, out, resume, storage_options, progress, info, device, quiet, report)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        if lease is not None:
            lease.release()


def _train(cache: str, dataroot: str | Path | None, cfg: TrainConfig, out: Path, resume: bool,
           storage_options: dict | None, progress: bool, info: DistInfo, device: torch.device,
           quiet: bool = False, report: Callable[[str], None] = log.info) -> Path:
    """One training run, in eight steps: open the cache and its dataset; build the student, its
    criterion and optimiser; resume the run in `out`; validate the cache once; wrap for DDP and write
    the run's config; open its logs; run the steps (checkpoints every `checkpoint_every`, and on a stop
    signal); write the run's summary."""
    rc = cfg.train
    if rc.deterministic:
        torch.backends.cudnn.benchmark = False
    # Same seed on every rank: identical initial weights (DDP also broadcasts them).
    _seed_all(rc.seed)

    reader = open_cache(cache, cfg.student, storage_options=storage_options, dataroot=dataroot)
    provenance = run_provenance(cache, reader, dataroot)
    dataset = CacheDataset(reader, dataroot, cfg.student, cfg.data, seed=rc.data_order_seed)
    sampler = EpochSampler(len(dataset), info.world, info.rank, rc.data_order_seed)
    bs = cfg.data.batch_size
    steps_per_epoch = sampler.num_samples // bs
    if steps_per_epoch < 1:
        raise UserInputError(f"{cache}: {len(dataset)} samples give no full batch of {bs} on each of {info.world} "
                             "processes; lower data.batch_size")
    total = rc.steps if rc.steps is not None else rc.epochs * steps_per_epoch

    run = _build_training(cfg, reader, cache, device, total)
    if resume:
        _resume(run, out, cfg, provenance, info)
    if info.main:
        s = cfg.student
        report(f"training the {s.modality} student on {device}"
               + (f" ({info.world} processes)" if info.world > 1 else "") + f": {len(dataset)} samples of {cache}, "
               f"{total} steps of batch {bs}{' per process' if info.world > 1 else ''} "
               f"({total / steps_per_epoch:.1f} epochs); run directory {out}"
               + (f"\ncontinuing from step {run.step} of {total} (--resume)" if resume else ""))
    if rc.validate_cache:  # after the cheap refusals above, before any training step
        _validate_once(cache, reader, out, storage_options, info, progress and sys.stderr.isatty())

    ddp_net: nn.Module = run.net
    if info.world > 1:
        # The search for unused parameters walks the graph every step; skip it where the config
        # guarantees every parameter a gradient.
        ddp_net = nn.parallel.DistributedDataParallel(
            run.net, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not run.criterion.reaches_every_parameter)
    if info.main:
        (out / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
        import yaml
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    if info.world > 1:
        dist.barrier()

    logs = _RunLogs(out, info, run.step, total, progress, quiet)
    clock = _StepClock(run.step, bs * info.world)
    loader = _loader(dataset, sampler, cfg, device)
    stop = StopSignal()
    try:
        while run.step < total:
            epoch, position = divmod(run.step, steps_per_epoch)
            sampler.set_position(epoch, position * bs)
            clock.wait_started()
            for batch in loader:
                clock.data_arrived()
                logs.samples.write(json.dumps({"step": run.step, "epoch": epoch, "indices": batch.indices}) + "\n")
                # the teacher maps are warped here, on the device, so that the step and its pictures see them
                batch = batch.to(device).with_teacher_in_augmented_frame(cfg.student.grid, cfg.student.class_setup)
                run.net.keep_outputs = (logs.writer is not None and rc.image_every > 0
                                        and (run.step + 1) % rc.image_every == 0)
                term_grads = bool(rc.term_grad_every) and (run.step + 1) % rc.term_grad_every == 0
                run.criterion.progress = run.step / total
                losses, loss, grad_norm, lr = _optimizer_step(run, ddp_net, batch, cfg.optim.grad_clip, term_grads)
                if logs.logs_at(run.step, total, cfg.train, term_grads):
                    # the one host sync: a logging step's times and values; between them the host queues
                    # the next step while the device works
                    synchronize(device)
                clock.step_done(run.step)
                logs.after_step(run, batch, cfg, losses, loss, grad_norm, lr, clock, total)
                if run.step == total or (rc.checkpoint_every and run.step % rc.checkpoint_every == 0):
                    _save(out, run, cfg, info, provenance)
                if stop.requested(info):
                    _save(out, run, cfg, info, provenance)
                    raise TrainingInterrupted(stop.signum, run.step, total, checkpoint_path(out, run.step))
                clock.wait_started()
                if run.step >= total:
                    break
        # Evidence that data parallelism kept the ranks in step: a fingerprint of this rank's weights.
        logs.samples.write(json.dumps({"step": run.step, "final_weights_sha256": weights_sha256(run.net)}) + "\n")
    except UserInputError as e:
        # From a DataLoader worker the message arrives wrapped in the worker's traceback: keep its line.
        raise UserInputError(_worker_message(e)) from None
    finally:
        stop.restore()
        logs.close()
    final = checkpoint_path(out, total)
    if info.main:
        (out / "train_summary.json").write_text(json.dumps({
            "steps": total, **clock.summary(), "world_size": info.world, "num_workers": cfg.data.num_workers,
            "final_checkpoint": str(final)}, indent=2))
    if info.world > 1:
        dist.barrier()
    return final


@dataclass
class _Training:
    """What a run updates: the student, its criterion, both as one module (`net`), the optimiser
    state, the EMA of the weights and the step reached."""

    model: BevStudent
    criterion: X3KDLoss
    net: StudentWithCriterion
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    ema: EMA | None
    amp_dtype: torch.dtype | None
    step: int = 0


def _build_training(cfg: TrainConfig, reader: Any, cache: str, device: torch.device, total: int) -> _Training:
    model = build_student(cfg.student)
    if cfg.train.init_from:
        init_weights(model, cfg.train.init_from)
    criterion = X3KDLoss(cfg.student, *teacher_feature_statistics(reader, cfg.student, cache))
    net = StudentWithCriterion(model, criterion).to(device).train()
    params = [p for p in net.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": params}]
    disc_scale = cfg.student.losses.xat.discriminator_lr_scale
    if criterion.discriminator is not None and disc_scale != 1.0:
        # X-AT's discriminator at its own learning rate (its own Adam state: AdamW's are per parameter anyway)
        disc = {id(p) for p in criterion.discriminator.parameters()}
        groups = [{"params": [p for p in params if id(p) not in disc]},
                  {"params": [p for p in params if id(p) in disc], "lr": cfg.optim.lr * disc_scale}]
    # The fused kernel updates all parameters in one pass: torch's default for-each-tensor AdamW spent
    # ~50 ms of a ~250 ms tiny CPU step (R50: ~130 ms) on per-tensor dispatch (bench/student_step.py).
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay,
                                  fused=device.type in ("cpu", "cuda"))
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp) if device.type == "cuda" else None
    return _Training(model, criterion, net, params, optimizer, build_scheduler(optimizer, cfg.optim, total),
                     torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16),
                     EMA(model, cfg.train.ema_decay, warmup=cfg.train.ema_warmup) if cfg.train.ema_decay > 0 else None, amp_dtype)


def init_weights(model: BevStudent, path: str) -> None:
    """Start `model` from the weights in `path`: an x3kd checkpoint or a BEVDepth one (train.init_from)."""
    from .bevdepth_interop import is_bevdepth_state, load_bevdepth_weights

    loaded = read_torch_file(path, "train.init_from checkpoint", opaque_objects=True)
    if is_bevdepth_state(loaded):
        load_bevdepth_weights(model, path, loaded)
    elif isinstance(loaded, dict) and "model" in loaded and "config" in loaded:
        try:
            model.load_state_dict(loaded["model"])
        except RuntimeError as e:
            raise UserInputError(f"train.init_from {path}: its weights do not fit this config's student "
                                 f"({str(e).splitlines()[1].strip()[:140]})") from None
    else:
        raise UserInputError(f"train.init_from {path}: neither an x3kd nor a BEVDepth checkpoint")
    log.info("started from the weights in %s", path)


def _resume(run: _Training, out: Path, cfg: TrainConfig, provenance: dict[str, Any], info: DistInfo) -> None:
    """Load the newest checkpoint of `out` into `run`, refusing one of another config, cache or world size."""
    path = latest_checkpoint(out)
    if path is None:
        raise UserInputError(f"{out}: --resume given but there is no checkpoint in {out / CHECKPOINT_DIR}")
    ckpt = load_checkpoint(path)
    check_resume_config(ckpt["config"], cfg.to_dict(), int(ckpt["step"]), path)
    check_same_cache(ckpt.get("provenance"), provenance, path)
    if ckpt.get("world_size", 1) != info.world:
        raise UserInputError(f"{path}: written by {ckpt.get('world_size', 1)} processes, resumed with {info.world}; "
                             "exact resume needs the same number (the data order depends on it)")
    run.model.load_state_dict(ckpt["model"])
    run.criterion.load_state_dict(ckpt["criterion"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    if run.ema is not None:
        run.ema.state = ckpt["ema"]
        run.ema.updates = int(ckpt.get("ema_updates", ckpt["step"]))
    run.step = int(ckpt["step"])
    set_rng_state(ckpt["rng"][info.rank] if isinstance(ckpt["rng"], list) else ckpt["rng"])
    log.info("resumed from %s at step %d", path, run.step)


def _loader(dataset: CacheDataset, sampler: EpochSampler, cfg: TrainConfig, device: torch.device) -> DataLoader:
    workers = cfg.data.num_workers
    return DataLoader(
        dataset, batch_size=cfg.data.batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
        drop_last=True, pin_memory=device.type == "cuda",
        prefetch_factor=cfg.data.prefetch_factor if workers > 0 else None, persistent_workers=workers > 0,
        multiprocessing_context=cfg.data.multiprocessing_context if workers > 0 else None,
        # Its own generator: starting an epoch must not consume the global torch RNG, or a resumed run
        # (which starts its iterator mid-epoch) would diverge from an uninterrupted one.
        generator=torch.Generator().manual_seed(cfg.train.data_order_seed))


def _optimizer_step(run: _Training, ddp_net: nn.Module, batch: StudentBatch, grad_clip: float,
                    term_grads: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None, float]:
    """Forward, backward, clip, step, schedule, EMA: returns (loss terms, total, grad norm, the lr used).
    With `term_grads`, `losses` also holds `grad_norm/<term>`: each term's gradient norm on the
    student's weights (extra backward passes through the same graph; the step itself is unchanged)."""
    # amp_dtype is set on CUDA only
    autocast = torch.autocast("cuda", dtype=run.amp_dtype) if run.amp_dtype is not None else contextlib.nullcontext()
    with autocast:
        losses = ddp_net(batch)
        loss = total_loss(losses)
    if term_grads:
        losses.update(per_term_grad_norms(losses, [p for p in run.model.parameters() if p.requires_grad]))
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    grad_norm = None
    if grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(run.params, grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    lr = run.scheduler.get_last_lr()[0]
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update(run.model)
    run.step += 1
    return losses, loss, grad_norm, lr


def per_term_grad_norms(losses: dict[str, torch.Tensor], params: list[nn.Parameter]) -> dict[str, torch.Tensor]:
    """{'grad_norm/<term>': L2 norm of d loss_<term> / d params} for every `loss_*` term that reaches
    `params`, keeping the graph for the step's own backward."""
    out = {}
    for key, value in losses.items():
        if not key.startswith("loss_") or not value.requires_grad:
            continue
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        squares = [g.detach().float().pow(2).sum() for g in grads if g is not None]
        if squares:
            out[f"grad_norm/{key[5:]}"] = torch.stack(squares).sum().sqrt()
    return out


class _StepClock:
    """Where the time goes: waiting for data vs computing, per TensorBoard window and over this
    invocation except its first step (start-up: worker launch, lazy init)."""

    def __init__(self, start_step: int, samples_per_step: int) -> None:
        self.start_step = start_step
        self.samples_per_step = samples_per_step
        self.window_wait = self.window_compute = 0.0
        self.window_samples = 0
        self.run_wait = self.run_compute = 0.0
        self.run_steps = 0
        self.last_step = start_step
        self.t_wait = self.t_data = 0.0

    def wait_started(self) -> None:
        self.t_wait = time.perf_counter()

    def data_arrived(self) -> None:
        self.t_data = time.perf_counter()

    def step_done(self, step: int) -> None:
        t_end = time.perf_counter()
        wait, compute = self.t_data - self.t_wait, t_end - self.t_data
        self.window_wait += wait
        self.window_compute += compute
        self.window_samples += self.samples_per_step
        if step > self.start_step + 1:
            self.run_wait += wait
            self.run_compute += compute
            self.run_steps += 1
        self.last_step = step

    def take_window(self) -> tuple[float, float]:
        """(samples/s, fraction of the time waiting for data) since the last call."""
        busy = max(self.window_wait + self.window_compute, 1e-9)
        rates = self.window_samples / busy, self.window_wait / busy
        self.window_wait = self.window_compute = 0.0
        self.window_samples = 0
        return rates

    def summary(self) -> dict[str, Any]:
        busy = self.run_wait + self.run_compute
        return {"steps_this_run": self.last_step - self.start_step, "timed_steps": self.run_steps,
                "seconds_per_step": busy / max(self.run_steps, 1),
                "data_wait_fraction": self.run_wait / busy if busy else None,
                "samples_per_s": self.run_steps * self.samples_per_step / busy if busy else None}


class _RunLogs:
    """A run's outputs besides checkpoints: which samples each step read (every rank, line by line:
    the DDP test checks the ranks' shares are disjoint), TensorBoard scalars and pictures and the
    progress bar (rank 0)."""

    def __init__(self, out: Path, info: DistInfo, step: int, total: int, progress: bool, quiet: bool) -> None:
        self.samples = open(out / f"samples_rank{info.rank}.jsonl", "a", buffering=1)
        self.writer = None
        self.scalars = None
        self.bar = None
        if info.main:
            # the TensorBoard scalars as plain JSON lines too, for scripts (bench/synthetic_ablation's curves)
            self.scalars = open(out / "scalars.jsonl", "a", buffering=1)
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=step)
            if progress:
                from cache_schema.progress import progress as progress_bar

                self.bar = progress_bar(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True,
                                        quiet=quiet)

    def after_step(self, run: _Training, batch: StudentBatch, cfg: TrainConfig, losses: dict[str, torch.Tensor],
                   loss: torch.Tensor, grad_norm: torch.Tensor | None, lr: float, clock: _StepClock,
                   total: int) -> None:
        step = run.step
        term_grads = any(k.startswith("grad_norm/") for k in losses)
        logging_step = self.logs_at(step, total, cfg.train, term_grads)
        if self.writer is not None and logging_step:
            for k, v in losses.items():
                self.writer.add_scalar(f"loss/{k}" if k.startswith("loss_") else k, v.item(), step)
            self.writer.add_scalar("loss/total", loss.item(), step)
            self.writer.add_scalar("lr", lr, step)
            if grad_norm is not None:
                self.writer.add_scalar("grad_norm", float(grad_norm), step)
            samples_per_s, wait_fraction = clock.take_window()
            self.writer.add_scalar("perf/samples_per_s", samples_per_s, step)
            self.writer.add_scalar("perf/data_wait_fraction", wait_fraction, step)
            row = {"step": step, "lr": lr, "loss/total": loss.item(),
                   **{(f"loss/{k}" if k.startswith("loss_") else k): v.item() for k, v in losses.items()}}
            if grad_norm is not None:
                row["grad_norm"] = float(grad_norm)
            self.scalars.write(json.dumps(row) + "\n")
        if self.writer is not None and run.net.outputs is not None:
            _log_images(self.writer, run.net, batch, cfg.student, step)
        if self.bar is not None:
            if logging_step:  # reading a value waits for the device: only where the step syncs anyway
                # every term, not only the sum: a flat det/heatmap under a falling total is the first thing to see
                self.bar.set_postfix(loss=f"{loss.item():.3f}", **{k[5:]: f"{v.item():.3f}" for k, v in losses.items()
                                                                   if k.startswith("loss_")}, lr=f"{lr:.1e}")
            self.bar.update(1)

    @staticmethod
    def logs_at(step: int, total: int, rc: RunConfig, term_grads: bool = False) -> bool:
        """Whether step `step` logs its values (and so syncs with the device): every `log_every`
        steps, the last, and where the per-term gradient norms were taken."""
        return step % rc.log_every == 0 or step == total or term_grads

    def close(self) -> None:
        self.samples.close()
        if self.scalars is not None:
            self.scalars.close()
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _log_images(writer: Any, net: StudentWithCriterion, batch: StudentBatch, cfg: StudentConfig, step: int) -> None:
    """The step's pictures (student.tensorboard_images) into TensorBoard; frees the kept outputs."""
    from .tensorboard_images import training_images

    for tag, image in training_images(net.outputs, batch, cfg).items():
        writer.add_image(tag, image, step, dataformats="HWC")
    net.outputs = None


def _save(out: Path, run: _Training, cfg: TrainConfig, info: DistInfo, provenance: dict[str, Any]) -> None:
    """Write the step's checkpoint on rank 0 (with every rank's RNG state), keep the newest few."""
    state = rng_state()
    if info.world > 1:
        states: list[Any] = [None] * info.world
        dist.all_gather_object(states, state)
        state = states
    if not info.main:
        return
    ema = run.ema
    ckpt = {"model": run.model.state_dict(), "criterion": run.criterion.state_dict(),
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "ema": ema.state if ema is not None else None, "ema_updates": ema.updates if ema is not None else 0,
            "step": run.step, "rng": state,
            "config": cfg.to_dict(), "world_size": info.world, "provenance": provenance}
    save_atomic(ckpt, checkpoint_path(out, run.step))
    if cfg.train.keep_checkpoints > 0:
        for p in sorted((out / CHECKPOINT_DIR).glob("step_*.pt"))[:-cfg.train.keep_checkpoints]:
            p.unlink(missing_ok=True)
