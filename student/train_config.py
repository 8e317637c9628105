"""The training config file (`x3kd-student train --config`): its five blocks as typed values, and its loader.

    cfg = load_train_config("configs/tiny.yaml", ["loss.xfd.weight=0.5"])

`model:` (every StudentConfig field but `losses`, student/config.py), `loss:` (the loss blocks),
`data:` (student/data/dataset.py DataConfig), `optim:` (OptimConfig) and `train:` (RunConfig). Unknown
keys and out-of-range values are one-line user errors.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cache_schema.errors import UserInputError

from .config import LossConfig, StudentConfig, _from_dict, check_range
from .data.dataset import DataConfig

BLOCKS = ("model", "loss", "data", "optim", "train")  # a training config's top-level keys
SCHEDULES = ("cosine", "onecycle", "constant", "multistep")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and its learning-rate schedule (`optim:` block)."""

    lr: float = 2e-4
    weight_decay: float = 1e-7
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 5.0  # max global gradient norm; 0 = no clipping
    # "cosine" (linear warmup, then cosine), "onecycle", "constant" or "multistep" (BEVDepth's: lr x
    # `gamma` at each milestone, given as fractions of the run: its 20-epoch MultiStepLR [16, 19] is
    # (0.8, 0.95), its 24-epoch [19, 23] is (0.7917, 0.9583))
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01  # cosine ends at lr * min_lr_ratio
    milestones: tuple[float, ...] = (0.8, 0.95)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UserInputError(f"config optim.schedule: {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        check_range("optim.lr", self.lr, 0, low_open=True)
        check_range("optim.weight_decay", self.weight_decay, 0)
        check_range("optim.grad_clip", self.grad_clip, 0)
        check_range("optim.warmup_steps", self.warmup_steps, 0)
        check_range("optim.min_lr_ratio", self.min_lr_ratio, 0, 1)
        check_range("optim.gamma", self.gamma, 0, 1, low_open=True)
        for i, beta in enumerate(self.betas):
            check_range(f"optim.betas[{i}]", beta, 0, 1, high_open=True)
        if not all(0 < m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise UserInputError(f"config optim.milestones: {list(self.milestones)} must be increasing fractions "
                                 "of the run in (0, 1)")


@dataclass(frozen=True)
class RunConfig:
    """Length, precision, checkpointing and reproducibility of a run (`train:` block)."""

    steps: int | None = None  # optimizer steps; or
    epochs: int | None = None  # passes over the samples (each rank sees 1/world of every epoch)
    seed: int = 0  # the initial weights, and (unless data_seed is given) the data order and augmentation draws
    # the data order and augmentation draws alone: two runs of one seed and two data seeds start from the
    # same weights and see the samples in another order (the lab's A/A noise floor)
    data_seed: int | None = None
    deterministic: bool = False  # deterministic algorithms (exact resume on CPU; slower on GPU)
    amp: str = "off"  # "off", "bf16" or "fp16": autocast on GPU (ignored on CPU)
    ema_decay: float = 0.0  # > 0 keeps an exponential moving average of the weights, used by eval
    # updates over which the average's decay ramps in (decay * (1 - exp(-n / ema_warmup))): BEVDepth's
    # 2000 suits runs of tens of thousands of steps; a run of a few hundred needs a shorter one, or its
    # average is little more than its last weights
    ema_warmup: float = 2000.0
    checkpoint_every: int = 0  # steps between checkpoints; 0 = only at the end
    keep_checkpoints: int = 3  # most recent step checkpoints kept (the final one always is)
    log_every: int = 1  # steps between TensorBoard scalars
    image_every: int = 0  # steps between TensorBoard pictures (student vs teacher vs GT maps, depth); 0 = none
    # steps between per-term gradient norms: each loss term's gradient on the student's own weights
    # alone (not the training-only KD modules), one extra backward per term; into TensorBoard
    # (grad_norm/<term>) and scalars.jsonl. How hard each term pulls, beside its value; 0 = off
    term_grad_every: int = 0
    validate_cache: bool = True  # checksum every chunk once before the first training on a (re-)exported store
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda"
    # weights to start from (not with --resume): an x3kd checkpoint (its model weights) or a BEVDepth
    # checkpoint under its Lightning names (student.bevdepth_interop), e.g. to start X3KD from BEVDepth
    init_from: str | None = None

    @property
    def data_order_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    def __post_init__(self) -> None:
        check_range("train.log_every", self.log_every, 1)
        check_range("train.checkpoint_every", self.checkpoint_every, 0)
        check_range("train.keep_checkpoints", self.keep_checkpoints, 0)
        if (self.steps is None) == (self.epochs is None):
            raise UserInputError("config train: give exactly one of train.steps and train.epochs")
        if (self.steps or 1) < 1 or (self.epochs or 1) < 1:
            raise UserInputError("config train.steps / train.epochs: must be >= 1")
        if self.amp not in ("off", "bf16", "fp16"):
            raise UserInputError(f"config train.amp: {self.amp!r} is not off, bf16 or fp16")
        if not 0 <= self.ema_decay < 1:
            raise UserInputError(f"config train.ema_decay: must be in [0, 1), got {self.ema_decay}")
        if not self.ema_warmup > 0:
            raise UserInputError(f"config train.ema_warmup: must be > 0, got {self.ema_warmup}")
        if self.image_every < 0:
            raise UserInputError(f"config train.image_every: must be >= 0, got {self.image_every}")
        if self.term_grad_every < 0:
            raise UserInputError(f"config train.term_grad_every: must be >= 0, got {self.term_grad_every}")


@dataclass(frozen=True)
class TrainConfig:
    """A training config file: `model:` (every StudentConfig field but `losses`), `loss:` (the loss
    blocks), `data:`, `optim:` and `train:`."""

    student: StudentConfig
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=lambda: RunConfig(steps=1))

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "TrainConfig":
        """From the parsed YAML; a problem is one line, `where` (the file, or `--set key=value`), then the
        user's key (e.g. loss.xfd.weight) and what is wrong with it."""
        try:
            return cls._from_dict(d)
        except UserInputError as e:
            raise UserInputError(f"{where}: {str(e).removeprefix('config ')}") from None

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        if not isinstance(d, dict):
            raise UserInputError("expected a mapping at the top level")
        unknown = sorted(set(d) - set(BLOCKS))
        if unknown:
            raise UserInputError(f"{unknown[0]}: unknown top-level key (known: {', '.join(BLOCKS)})")
        model = dict(d.get("model") or {})
        if "losses" in model:
            raise UserInputError("model.losses: put the loss settings under the top-level `loss:` key")
        losses = _from_dict(LossConfig, d.get("loss") or {}, "loss")
        student = _from_dict(StudentConfig, {**model, "losses": losses}, "model")
        return cls(student, _from_dict(DataConfig, d.get("data") or {}, "data"),
                   _from_dict(OptimConfig, d.get("optim") or {}, "optim"),
                   _from_dict(RunConfig, d.get("train") or {"steps": 1}, "train"))

    def to_dict(self) -> dict[str, Any]:
        model = self.student.to_dict()
        loss = model.pop("losses")
        return {"model": model, "loss": loss, "data": dataclasses.asdict(self.data),
                "optim": dataclasses.asdict(self.optim), "train": dataclasses.asdict(self.train)}


def apply_overrides(d: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`key.sub=value` overrides onto a raw config dict; each value is parsed as YAML (so `0.5` is a
    float, `false` a bool, `[1, 2]` a list). Unknown keys are caught when the config is built."""
    import yaml

    d = json.loads(json.dumps(d))  # deep copy of plain values
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserInputError(f"--set {item!r}: expected key.path=value")
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise UserInputError(f"--set {key}: {p!r} is a value, not a block")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserInputError(f"--set {item!r}: value is not valid YAML") from None
    return d


def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file plus `--set` overrides; every problem is a one-line UserInputError."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{p}: config file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserInputError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    cfg = TrainConfig.from_dict(raw, str(p))
    for i, item in enumerate(overrides):
        # one override at a time: a bad one is named, not the file
        key = item.partition("=")[0].strip()
        try:
            cfg = TrainConfig._from_dict(apply_overrides(raw, overrides[:i + 1]))
        except UserInputError as e:
            problem = str(e).removeprefix("config ")
            raise UserInputError(f"--set {item}: {problem.removeprefix(key + ': ')}") from None
    return cfg
