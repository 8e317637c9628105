"""Options and result of a teacher fit, shared by the LiDAR and the image fit."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from cache_schema.errors import UserInputError


@dataclass
class FitOptions:
    """What `x3kd-cache fit-teacher` takes.

    `config`: lidar: a shipped CenterPoint config name or an mmdet3d model dict as .json; image: unused
    (the Mask R-CNN is described by `image_options`, the fields of `MaskRCNNConfig`). Give either
    `steps` or `epochs` (passes over the split); `limit` uses only the first N samples of the split.
    """

    dataroot: str
    version: str
    split: str
    out: str
    config: str | None = None
    steps: int | None = None
    epochs: int | None = None
    lr: float = 2e-3
    weight_decay: float = 1e-2
    batch_size: int = 2
    seed: int = 0
    device: str = "cpu"
    num_sweeps: int = 9
    limit: int | None = None
    grad_clip: float = 35.0
    # lidar: CenterPoint's global augmentation of each step's points and boxes (flips of x and y, a
    # rotation in +-22.5 deg, a scale in 0.95-1.05: the student's BEV augmentation ranges), so the
    # teacher answers alike for a scene and its augmented copy, as the cached maps the student warps
    # assume (BENCHMARKS "Cached maps under BEV augmentation")
    augment: bool = False
    image_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise UserInputError("fit-teacher: give exactly one of --steps and --epochs")
        for name in ("steps", "epochs", "batch_size", "limit"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise UserInputError(f"--{name.replace('_', '-')}: must be >= 1, got {v}")
        if not self.lr > 0:
            raise UserInputError(f"--lr: must be > 0, got {self.lr}")
        if self.num_sweeps < 0:
            raise UserInputError(f"--num-sweeps: must be >= 0, got {self.num_sweeps}")

    def total_steps(self, num_items: int) -> int:
        """Optimizer steps of the whole fit when one epoch is `num_items` items (samples or images)."""
        if self.steps is not None:
            return int(self.steps)
        return int(self.epochs) * math.ceil(num_items / self.batch_size)

    def torch_device(self) -> torch.device:
        try:
            dev = torch.device(self.device)
        except RuntimeError:
            raise UserInputError(f"--device {self.device}: not a torch device") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserInputError(f"--device {self.device}: no CUDA device is available")
        return dev


@dataclass
class FitResult:
    """Where the checkpoint went and how the loss moved (mean of the first / last tenth of the steps)."""

    checkpoint: str
    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    losses: list[float]
    teacher_options: dict[str, Any]

    def summary(self) -> str:
        return (f"wrote {self.checkpoint}: {self.steps} steps in {self.seconds:.0f} s, "
                f"loss {self.first_loss:.3f} -> {self.last_loss:.3f}")


def shuffled_batches(num_items: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless batches of item indices: each pass over the items in a fresh seeded order, a batch may
    span two passes (small fitting splits would otherwise waste their last partial batch)."""
    order = torch.Generator().manual_seed(seed)
    queue: list[int] = []
    size = min(batch_size, num_items)
    while True:
        batch = []
        while len(batch) < size:
            if not queue:
                queue = torch.randperm(num_items, generator=order).tolist()
            batch.append(queue.pop())
        yield batch


def loss_ends(losses: list[float]) -> tuple[float, float]:
    """Mean loss over the first and the last tenth of the steps (at least one step each)."""
    n = max(1, len(losses) // 10)
    return sum(losses[:n]) / n, sum(losses[-n:]) / n


def make_optimizer(params: Any, options: FitOptions, total_steps: int
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a one-cycle schedule: warm up for the first 30% of the steps, anneal to ~0; a
    short fit needs the high peak to move far from init and the annealing to settle."""
    opt = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    if total_steps < 10:  # too short for warm-up and annealing to mean anything
        return opt, torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=options.lr, total_steps=max(total_steps, 1),
                                                pct_start=0.3, anneal_strategy="cos")
    return opt, sched


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, opt: torch.optim.Optimizer,
                   sched: torch.optim.lr_scheduler.LRScheduler, grad_clip: float) -> float:
    """One clipped AdamW step + schedule step; returns the loss value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    sched.step()
    return loss.item()


def update_export_yaml(path: str, kind: str, result: FitResult) -> None:
    """Merge the `x3kd-cache export` options that run the fitted teacher into the YAML file `path`
    (lidar: lidar_teacher, lidar_config, lidar_checkpoint; image: image_teacher, image_checkpoint,
    image_options), keeping whatever else it holds."""
    from pathlib import Path

    import yaml

    p = Path(path)
    data: dict[str, Any] = {}
    if p.is_file():
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserInputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise UserInputError(f"{path}: expected a mapping of export options")
    ckpt = str(Path(result.checkpoint).resolve())
    if kind == "lidar":
        data.update({k: v for k, v in result.teacher_options.items() if v is not None})
        data["lidar_checkpoint"] = ckpt
    else:
        data.update(image_teacher="maskrcnn", image_checkpoint=ckpt, image_options=result.teacher_options)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(data, sort_keys=False))


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, batches: Iterable[Callable[[], object]]) -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over `batches` (each a
    callable running one forward pass) with the fitted weights ("precise BN").

    A short fit needs this: with mmdet3d's BN momentum of 0.01, after ~100 steps the running
    statistics are still mostly those of the first, very different steps, and eval mode would
    normalise with them."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m.momentum, m.training) for m in bns]
    was_training = model.training
    model.train()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    for run in batches:
        run()
    for m, (momentum, _) in zip(bns, saved):
        m.momentum = momentum
    model.train(was_training)
