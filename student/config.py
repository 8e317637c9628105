"""Typed configuration of the student (camera or radar) and its losses.

Every size is a config value. A config is a tree of frozen dataclasses that loads from a plain dict
(the parsed YAML file) with `StudentConfig.from_dict`; unknown keys are user errors, not silently
ignored, because a misspelt loss switch would otherwise run a different ablation than the one asked.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES, NUSCENES_TASKS, BevGrid, ClassSetup
from cache_schema.layout import REGRESSION_HEADS
from detection.centerpoint_coder import DecodeConfig
from detection.det_loss import DetLossConfig

if TYPE_CHECKING:
    from cache_schema.layout import StoreConfig

T = TypeVar("T")


def check_range(key: str, value: float, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """A one-line UserInputError naming `key` (e.g. "loss.xfd.weight") when `value` is outside the range."""
    bad = ((low is not None and (value <= low if low_open else value < low))
           or (high is not None and (value >= high if high_open else value > high)))
    if bad:
        left = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        right = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise UserInputError(f"config {key}: must be {' and '.join(s for s in (left, right) if s)}, got {value!r}")


def term_on(term: Any) -> bool:
    """Whether a loss term block (`loss.<term>`) runs: enabled and with a non-zero weight."""
    return bool(term.enabled) and term.weight != 0


@dataclass(frozen=True)
class BackboneConfig:
    """torchvision ResNet + a neck whose single output has stride 16: "secondfpn" (BEVDepth's: all four
    stages, neck_channels / 4 each, concatenated) or "fpn" (a lighter fusion of C3-C5)."""

    depth: int = 50  # 18, 34, 50 or 101
    weights: str | None = None  # path to a torchvision ResNet state dict; None = random init
    neck: str = "secondfpn"
    neck_channels: int = 512
    frozen_stages: int = 0  # 0 = train all; k = freeze the stem and the first k-1 residual stages
    # channels of the stem and first stage (doubling per stage): 64 is torchvision's ResNet; narrower
    # is the same network cheaper (32: a quarter of the FLOPs; the synthetic lab's student)
    base_width: int = 64

    def __post_init__(self) -> None:
        if self.base_width < 4:
            raise UserInputError(f"config model.backbone.base_width: must be >= 4, got {self.base_width}")
        if self.neck not in ("secondfpn", "fpn"):
            raise UserInputError(f"config model.backbone.neck: {self.neck!r} is not 'secondfpn' or 'fpn'")
        if self.neck == "secondfpn" and self.neck_channels % 4:
            raise UserInputError(f"config model.backbone.neck_channels: {self.neck_channels} must be divisible by 4 "
                                 "for the secondfpn neck (four stages concatenated)")


@dataclass(frozen=True)
class DepthNetConfig:
    """BEVDepth's camera-aware depth net: D depth bins + context channels per feature pixel. The depth
    branch is `residual_blocks` BasicBlocks, then ASPP (`aspp`) and a deformable conv (`deformable`);
    `aggregation` runs BEVDepth's depth aggregation ("da") on the frustum features before pooling."""

    d_bound: tuple[float, float, float] = (2.0, 58.0, 0.5)  # (min, max, step) metres -> 112 bins
    mid_channels: int = 512
    context_channels: int = 80
    camera_aware: bool = True  # SE-modulate depth/context features with an MLP of the camera parameters
    residual_blocks: int = 3
    aspp: bool = True
    deformable: bool = True
    aggregation: bool = True

    @property
    def num_bins(self) -> int:
        lo, hi, step = self.d_bound
        return int(round((hi - lo) / step))


@dataclass(frozen=True)
class RadarInputConfig:
    """The radar student's input (`model.modality: radar`): pillars over the cached multi-sweep radar
    points, one pillar per BEV cell of the teacher's grid (radar is far too sparse for finer pillars)."""

    sweeps: int = 6  # scans per radar: must equal the cache's radar_sweeps; eval reads as many
    pillar_channels: tuple[int, ...] = (64,)  # PointNet (PFN) layer widths
    max_points_per_pillar: int = 16
    max_pillars: int = 16384

    def __post_init__(self) -> None:
        if self.sweeps < 1 or self.max_points_per_pillar < 1 or self.max_pillars < 1 or not self.pillar_channels:
            raise UserInputError("config model.radar: sweeps, max_points_per_pillar, max_pillars must be >= 1 and "
                                 "pillar_channels non-empty")


@dataclass(frozen=True)
class BevEncoderConfig:
    """ResNet-style BEV backbone (BasicBlock stages) + a neck back to the BEV grid resolution:
    "secondfpn" (BEVDepth's: a 7x7 stride-2 stem, the input and every stage upsampled to the grid,
    out_channels / 4 each, concatenated) or "fpn" (summed laterals and a 3x3 conv, no stem)."""

    stage_channels: tuple[int, ...] = (160, 320, 640)
    stage_blocks: tuple[int, ...] = (2, 2, 2)
    stage_strides: tuple[int, ...] = (1, 2, 2)
    out_channels: int = 256
    neck: str = "secondfpn"

    def __post_init__(self) -> None:
        if self.neck not in ("secondfpn", "fpn"):
            raise UserInputError(f"config model.bev_encoder.neck: {self.neck!r} is not 'secondfpn' or 'fpn'")


@dataclass(frozen=True)
class HeadConfig:
    """The shared CenterHead (detection/center_head.py) settings."""

    share_conv_channel: int = 64
    head_conv: int = 64
    # output name -> (channels, convs): the regression layout's heads, two convs each (CenterPoint's)
    common_heads: dict[str, tuple[int, int]] = field(default_factory=lambda: {
        name: (len(channels), 2) for name, channels in REGRESSION_HEADS})






@dataclass(frozen=True)
class DepthLossConfig:
    """BEVDepth depth supervision from LiDAR depth targets."""

    enabled: bool = True
    weight: float = 3.0


@dataclass(frozen=True)
class XFDLossConfig:
    """Feature distillation to the cached teacher BEV feature (student/losses/xfd.py). `region` picks
    which cells count and how: "heatmap" (X3KD as we first defined it: every cell, weighted 1 + fg_weight *
    max_k H_T), "gt_gaussian" (BEVDistill's: the GT boxes' CenterPoint Gaussians as weights, normalised by
    their sum), "gt_boxes" (DistillBEV's split: cells inside GT boxes, each box's cells weighted by
    sqrt(cell area / box area) so that large boxes do not drown small ones, plus `background_weight` times
    the mean over the other cells) or "box_points" (UniDistill's: nine points per GT box, plus
    `relation_weight` times their cosine-relation term). `attention` (DistillBEV's) scales the error by the
    teacher's spatial and channel attention (softmax of its mean magnitude at `attention_temperature`)."""

    enabled: bool = True
    weight: float = 1.0
    fg_weight: float = 5.0  # lambda_fg in w(p) = 1 + lambda_fg * max_k H_T(k, p) ("heatmap")
    feature: str = "encoder"  # "view_transform" or "encoder": which student BEV feature is distilled
    standardize: bool = False  # standardise F_T per channel with the store's statistics
    region: str = "heatmap"
    background_weight: float = 0.0  # "gt_boxes": weight of the background cells' mean
    relation_weight: float = 0.0  # "box_points": weight of the 9x9 cosine-relation term
    attention: bool = False  # scale the error by the teacher's spatial and channel attention
    attention_temperature: float = 0.5

    def __post_init__(self) -> None:
        if self.region not in ("heatmap", "gt_gaussian", "gt_boxes", "box_points"):
            raise UserInputError(f"config loss.xfd.region: {self.region!r} is not heatmap, gt_gaussian, gt_boxes or "
                                 "box_points")
        if self.attention and self.region == "box_points":
            raise UserInputError("config loss.xfd.attention: not defined for region box_points (it samples nine "
                                 "points per box, not cells)")
        if not self.attention_temperature > 0:
            raise UserInputError(f"config loss.xfd.attention_temperature: must be > 0, got {self.attention_temperature}")


@dataclass(frozen=True)
class XATLossConfig:
    """Adversarial BEV feature alignment (student/losses/xat.py). `objective` "grl" is X3KD's: one BCE
    through a gradient-reversal layer (the student's gradient vanishes once the discriminator wins);
    "nonsaturating" trains the discriminator on detached features and the student to make its features
    called real (GAN's non-saturating loss: its gradient is largest where the discriminator is most sure);
    "least_squares" the same with LSGAN's squared errors. `ramp`: the student's side ramps in with DANN's
    2 / (1 + exp(-10 p)) - 1 over the run; `region` "foreground" judges only cells where the teacher's
    heatmap reaches 0.1; `normalize` compares L2-normalised features per cell (the teacher's are >= 0
    after ReLU, a linear adapter's are not: told apart by their sign alone)."""

    enabled: bool = True
    weight: float = 0.1
    grl_scale: float = 1.0  # lambda_grl ("grl")
    # 64 keeps the discriminator at ~5% of an R50 training step on a 128x128 grid (256: ~25%).
    hidden_channels: int = 64
    objective: str = "grl"
    ramp: bool = False
    region: str = "all"
    normalize: bool = False
    discriminator_lr_scale: float = 1.0  # the discriminator's learning rate relative to optim.lr

    def __post_init__(self) -> None:
        if self.objective not in ("grl", "nonsaturating", "least_squares"):
            raise UserInputError(f"config loss.xat.objective: {self.objective!r} is not grl, nonsaturating or "
                                 "least_squares")
        if self.region not in ("all", "foreground"):
            raise UserInputError(f"config loss.xat.region: {self.region!r} is not all or foreground")
        if not self.discriminator_lr_scale > 0:
            raise UserInputError(f"config loss.xat.discriminator_lr_scale: must be > 0, got {self.discriminator_lr_scale}")


@dataclass(frozen=True)
class XODLossConfig:
    """Output distillation to the cached teacher heatmaps and regression maps."""

    enabled: bool = True
    weight: float = 1.0
    heatmap_weight: float = 1.0
    reg_weight: float = 0.25
    gamma: float = 2.0
    # Where the regression term applies: "threshold" (cells whose teacher confidence max_k H_T is at
    # least reg_threshold), "peak" (those that are also 3x3 local maxima: one cell per object, as the
    # detection loss) or "soft" (every cell weighted by max_k H_T: background probabilities then weigh
    # regressions that come from an arbitrary task group).
    reg_mask: str = "threshold"
    reg_threshold: float = 0.3
    # What the heatmap term is divided by: "peaks", the teacher's objects (per-class 3x3 local maxima of
    # H_T >= reg_threshold; what the detection loss divides by, its number of GT objects), or "mass",
    # sum H_T (the first definition). With "mass" a teacher's low background probabilities over the
    # whole grid (sum H_T ~ 436 per sample for the lab teacher, against ~9 peaks for ~7 GT boxes) weigh
    # its objects down ~50x, and a KD-only student learns the background and no object (BENCHMARKS.md,
    # radar student: mAP 0.000 with "mass", > 0 with "peaks").
    normalize: str = "peaks"
    # "per_class" (X3KD's: every class at every cell, so the student learns the teacher's split between
    # classes too) or "class_agnostic" (UniDistill's: the maximum over classes, the teacher's objectness)
    classes: str = "per_class"
    # "all" cells, or only where the GT boxes' Gaussians are (BEVDistill / UniDistill gate response
    # distillation with GT: the teacher's confusions elsewhere are not taught)
    region: str = "all"

    def __post_init__(self) -> None:
        if self.reg_mask not in ("threshold", "peak", "soft"):
            raise UserInputError(f"config loss.xod.reg_mask: {self.reg_mask!r} is not threshold, peak or soft")
        if self.normalize not in ("peaks", "mass"):
            raise UserInputError(f"config loss.xod.normalize: {self.normalize!r} is not peaks or mass")
        if self.classes not in ("per_class", "class_agnostic"):
            raise UserInputError(f"config loss.xod.classes: {self.classes!r} is not per_class or class_agnostic")
        if self.region not in ("all", "gt"):
            raise UserInputError(f"config loss.xod.region: {self.region!r} is not all or gt")


@dataclass(frozen=True)
class XISLossConfig:
    """Auxiliary Mask R-CNN heads on the PV features, trained on the image teacher's detections."""

    enabled: bool = True
    weight: float = 1.0
    score_threshold: float = 0.5
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    # Lighter than torchvision's Mask R-CNN (1024, 4x256 mask convs, 512 RoIs): the heads only shape
    # the PV features, and these sizes keep X-IS at ~8% of an R50 training step instead of ~50%.
    representation_size: int = 256  # width of the box head's two fully connected layers
    mask_layers: tuple[int, ...] = (128, 128)
    rpn_batch_size_per_image: int = 256
    rpn_pre_nms_top_n: int = 2000
    rpn_post_nms_top_n: int = 1000
    box_batch_size_per_image: int = 128
    # images without a pseudo-label: "skip" them (learn only from what the teacher saw) or train their
    # anchors and proposals as "background" (torchvision's rule; student.losses.xis.xis_loss says why not)
    empty_images: str = "skip"

    def __post_init__(self) -> None:
        if self.empty_images not in ("skip", "background"):
            raise UserInputError(f"config loss.xis.empty_images: {self.empty_images!r} is not skip or background")


@dataclass(frozen=True)
class LossConfig:
    """One block per X3KD term: each has `enabled`, `weight` and its own hyper-parameters.

    KD-only training (the paper's RADAR setting) is `det.weight: 0` (or `det.enabled: false`)."""

    det: DetLossConfig = field(default_factory=DetLossConfig)
    ds: DepthLossConfig = field(default_factory=DepthLossConfig)
    xfd: XFDLossConfig = field(default_factory=XFDLossConfig)
    xat: XATLossConfig = field(default_factory=XATLossConfig)
    xod: XODLossConfig = field(default_factory=XODLossConfig)
    xis: XISLossConfig = field(default_factory=XISLossConfig)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            term = getattr(self, f.name)
            check_range(f"loss.{f.name}.weight", term.weight, 0)
        check_range("loss.det.heatmap_weight", self.det.heatmap_weight, 0)
        check_range("loss.det.reg_weight", self.det.reg_weight, 0)
        check_range("loss.xfd.fg_weight", self.xfd.fg_weight, 0)
        check_range("loss.xfd.background_weight", self.xfd.background_weight, 0)
        check_range("loss.xat.grl_scale", self.xat.grl_scale, 0)
        check_range("loss.xat.hidden_channels", self.xat.hidden_channels, 1)
        check_range("loss.xod.heatmap_weight", self.xod.heatmap_weight, 0)
        check_range("loss.xod.reg_weight", self.xod.reg_weight, 0)
        check_range("loss.xod.gamma", self.xod.gamma, 0)
        check_range("loss.xod.reg_threshold", self.xod.reg_threshold, 0, 1)
        check_range("loss.xis.score_threshold", self.xis.score_threshold, 0, 1)


MODALITIES = ("camera", "radar")


@dataclass(frozen=True)
class StudentConfig:
    """The whole student: its sensor (`modality`: the BEVDepth camera student, or the radar student
    of pillars over radar points), input size, BEV grid, classes, model parts and losses. The radar
    student uses `radar`, `bev_encoder` and `head`; the image parts are ignored, and DS and X-IS (which
    need cameras) must be off."""

    modality: str = "camera"
    image_size: tuple[int, int] = (256, 704)  # (H, W) of the augmented camera images fed to the model
    num_cameras: int = 6
    # BEVDepth's "2key": the previous key frame's cameras, through the same image branch (without
    # gradient, as BEVDepth) and lifted into this frame, give a second BEV map beside this one's
    # (context_channels x 2 into the BEV encoder). 1 = this frame alone. The radar student ignores it.
    key_frames: int = 2
    point_cloud_range: tuple[float, ...] = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
    voxel_size: tuple[float, ...] = (0.2, 0.2, 8.0)
    out_size_factor: int = 4
    classes: tuple[str, ...] = NUSCENES_CLASSES
    tasks: tuple[tuple[str, ...], ...] = NUSCENES_TASKS
    teacher_bev_channels: int = 384  # C_T of the cached LiDAR-teacher BEV feature (CenterPoint pillar02)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    depth_net: DepthNetConfig = field(default_factory=DepthNetConfig)
    bev_encoder: BevEncoderConfig = field(default_factory=BevEncoderConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    test: DecodeConfig = field(default_factory=DecodeConfig)
    radar: RadarInputConfig = field(default_factory=RadarInputConfig)
    losses: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise UserInputError(f"config model.modality: {self.modality!r} is not one of {', '.join(MODALITIES)}")
        lc = self.losses
        gt_gated = []
        if term_on(lc.xfd) and lc.xfd.region != "heatmap":
            gt_gated.append(f"loss.xfd.region {lc.xfd.region}")
        if term_on(lc.xod) and lc.xod.region != "all":
            gt_gated.append(f"loss.xod.region {lc.xod.region}")
        if gt_gated and not term_on(lc.det):
            raise UserInputError(f"config {gt_gated[0]}: gates distillation with the GT boxes, which a run without the "
                                 "det loss (KD-only) does not read; use the teacher-only default or turn loss.det on")
        if self.modality == "radar":
            for name in ("ds", "xis"):
                term = getattr(self.losses, name)
                if term_on(term):
                    raise UserInputError(f"config loss.{name}: needs camera images, which the radar student has not; "
                                         f"set loss.{name}.enabled: false")
        if self.key_frames not in (1, 2):
            raise UserInputError(f"config model.key_frames: {self.key_frames} is not 1 or 2")
        if self.backbone.depth not in (18, 34, 50, 101):
            raise UserInputError(f"config model.backbone.depth: {self.backbone.depth} is not one of 18, 34, 50, 101")
        if self.xfd_feature not in ("view_transform", "encoder"):
            raise UserInputError(f"config loss.xfd.feature: {self.xfd_feature!r} is not 'view_transform' or 'encoder'")
        try:
            self.class_setup  # noqa: B018  (validates the task grouping)
        except ValueError as e:
            raise UserInputError(f"config model.tasks: {e}") from None
        h, w = self.image_size
        if h % 16 or w % 16:
            raise UserInputError(f"config model.image_size: {self.image_size} must be divisible by the feature stride 16")

    @property
    def xfd_feature(self) -> str:
        return self.losses.xfd.feature

    @property
    def grid(self) -> BevGrid:
        return BevGrid(tuple(self.point_cloud_range), tuple(self.voxel_size), self.out_size_factor)

    @property
    def class_setup(self) -> ClassSetup:
        return ClassSetup(tuple(self.classes), tuple(tuple(t) for t in self.tasks))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudentConfig":
        return _from_dict(cls, d, "config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_store(self, store: "StoreConfig", url: str = "cache") -> None:
        """Refuse a cache whose BEV grid, classes, cameras or teacher feature width do not match this
        student (DESIGN.md: one-line reason, user error)."""
        if store.grid != self.grid:
            raise UserInputError(f"{url}: store BEV grid {_grid_words(store.grid)} != the config's "
                                 f"{_grid_words(self.grid)}{_configs_for(store.grid)}")
        if store.classes != self.class_setup:
            raise UserInputError(f"{url}: store classes/tasks {store.classes.to_json()} != student's "
                                 f"{self.class_setup.to_json()}")
        if self.modality == "radar":
            if "radar" not in store.groups:
                raise UserInputError(f"{url}: the radar student needs the cache's radar group, which this store lacks "
                                     "(export from a dataroot with radar data, without --radar-sweeps 0)")
            if store.radar_sweeps != self.radar.sweeps:
                raise UserInputError(f"{url}: store holds {store.radar_sweeps} scans per radar, config "
                                     f"model.radar.sweeps is {self.radar.sweeps}; add --set "
                                     f"model.radar.sweeps={store.radar_sweeps}")
        elif store.num_cameras != self.num_cameras:
            raise UserInputError(f"{url}: store has {store.num_cameras} cameras, student config expects {self.num_cameras}")
        lc = self.losses
        if term_on(lc.xod) and "lidar_teacher" in store.groups:
            from cache_schema.layout import REGRESSION_ENCODING

            different = store.regression.difference(REGRESSION_ENCODING)
            if different:
                raise UserInputError(f"{url}: the teacher's regression maps use another encoding than the student's "
                                     f"CenterPoint targets ({different}); X-OD would learn wrong boxes: re-export with "
                                     "a CenterPoint teacher of the standard encoding, or set loss.xod.enabled=false")
        kd_feature = term_on(lc.xfd) or term_on(lc.xat)
        if kd_feature and store.bev_channels != self.teacher_bev_channels:
            raise UserInputError(f"{url}: store teacher BEV features have {store.bev_channels} channels, "
                                 f"config teacher_bev_channels is {self.teacher_bev_channels}; add "
                                 f"--set model.teacher_bev_channels={store.bev_channels}")


def _grid_words(grid: BevGrid) -> str:
    r = grid.point_cloud_range
    h, w = grid.shape
    return f"{h}x{w} cells of {grid.cell_size[0]:g} m over x {r[0]:g}..{r[3]:g}, y {r[1]:g}..{r[4]:g}"


def _configs_for(grid: BevGrid) -> str:
    """'; configs/x.yaml matches it' for the shipped configs of a source checkout whose grid is `grid`."""
    import yaml

    folder = Path(__file__).resolve().parents[1] / "configs"
    matches = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
            other = BevGrid(tuple(model["point_cloud_range"]), tuple(model["voxel_size"]),
                            int(model.get("out_size_factor", 4)))
        except (KeyError, TypeError, ValueError, yaml.YAMLError):
            continue
        if other == grid:
            matches.append(f"configs/{path.name}")
    return f"; {' or '.join(matches)} match{'es' if len(matches) == 1 else ''} the store" if matches else ""


def _from_dict(cls: type[T], d: Any, where: str) -> T:
    """Build dataclass `cls` from nested plain values, converting lists to the annotated tuples."""
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise UserInputError(f"{where}: expected a mapping for {cls.__name__}, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        hint = f"did you mean {where}.{close[0]}?" if close else f"known: {', '.join(sorted(names))}"
        raise UserInputError(f"{where}.{unknown[0]}: unknown key ({hint})")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in d.items()}
    return cls(**kwargs)


def _convert(tp: Any, v: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, v, where)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if v is None:
            return None
        return _convert(next(a for a in args if a is not type(None)), v, where)
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise UserInputError(f"{where}: expected a list, got {v!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], x, where) for x in v)
        if len(args) != len(v):
            raise UserInputError(f"{where}: expected {len(args)} values, got {len(v)}")
        return tuple(_convert(a, x, where) for a, x in zip(args, v))
    if origin is dict:
        if not isinstance(v, dict):
            raise UserInputError(f"{where}: expected a mapping, got {v!r}")
        return {str(k): _convert(args[1], x, f"{where}.{k}") for k, x in v.items()}
    if tp is float and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if tp is float and isinstance(v, str):
        # YAML 1.1 reads 4e-3 (no dot) as a string; as a float field it is the number the user meant
        try:
            return float(v)
        except ValueError:
            raise UserInputError(f"{where}: expected a number, got {v!r}") from None
    if tp is float:
        raise UserInputError(f"{where}: expected a number, got {v!r}")
    if tp in (int, str, bool) and not isinstance(v, tp) or (tp is int and isinstance(v, bool)):
        raise UserInputError(f"{where}: expected {tp.__name__}, got {v!r}")
    return v
