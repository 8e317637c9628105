"""A trained student as it ships: load one for inference (a checkpoint, a released file or an ONNX
file), export the camera student to ONNX, and run an exported file where a student runs.

`export_onnx` writes the inference model (image backbone -> depth net -> Lift-Splat pooling -> BEV
encoder -> head; no teacher, no training-only module) for one sample of the config's cameras and image
size. Inputs are the cameras and their parameters, as the evaluation builds them: `images` [N, 3, H, W]
(augmented and normalised), `intrinsics` [N, 3, 3] of the augmented images, `cam2lidar` [N, 4, 4],
`ida` [N, 3, 3]; a two-key-frame student also takes `prev_images`, `prev_intrinsics` and
`prev_cam2lidar` (the previous key frame's cameras in this frame's LiDAR frame). Outputs are the head's
maps, `task{t}_{name}` in the head's order. Decoding (top-k, NMS) stays outside the graph, in the
shared CenterPoint coder, so an exported student's boxes come out of the same code as the PyTorch one's.

The previous key frame enters as images, not as its cached BEV map: BEVDepth computes it from the
previous images with THIS frame's camera parameters (`BEVDepthStudent._previous_frame`), so a BEV map
cached when that frame was the key frame would be a different map from the one the student was trained
on. The price is the image branch running twice per sample, as in training.

How the graph stays within ONNX: the camera matrices are inverted by their adjugate (no matrix inverse
op), the voxel pooling is a ScatterElements with reduction "add" (`LSSViewTransform.pool` while
exporting), and torchvision's deformable conv maps to ONNX's DeformConv (opset 19). `OnnxStudent` runs
a file with onnxruntime behind the `BevStudent` interface, so `x3kd-student eval --onnx` and `predict`
use the same decoding, results writer and devkit scoring as a checkpoint.

Needs the optional extra `onnx` (onnx, onnxruntime).
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cache_schema.errors import UserInputError

from .batch import StudentBatch
from .models.base import BevStudent, StudentOutputs
from .models.student import build_student
from .run_dir import load_checkpoint
from .train_config import TrainConfig

DEFORMABLE_OPSET = 19  # ONNX's DeformConv
MIN_OPSET = 16  # ScatterElements with reduction "add"
INPUTS = ("images", "intrinsics", "cam2lidar", "ida")
PREVIOUS_INPUTS = ("prev_images", "prev_intrinsics", "prev_cam2lidar")


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserInputError(f"{module} is not installed: pip install 'x3kd[onnx]'") from None


class _ExportedStudent(nn.Module):
    """The camera student as a function of plain tensors (one sample, no BEV augmentation)."""

    def __init__(self, model: BevStudent) -> None:
        super().__init__()
        self.model = model

    def forward(self, images, intrinsics, cam2lidar, ida, *previous):
        prev = dict(zip(("prev_images", "prev_intrinsics", "prev_cam2lidar"), (p[None] for p in previous)))
        batch = StudentBatch(images=images[None], intrinsics=intrinsics[None], cam2lidar=cam2lidar[None],
                             ida=ida[None], bda=torch.eye(4, dtype=images.dtype, device=images.device)[None], **prev)
        return tuple(task[name] for task in self.model(batch).head_outputs for name in sorted(task))


def example_inputs(cfg: Any) -> dict[str, torch.Tensor]:
    """One sample's inputs of the config's shapes: a ring of cameras at 1.5 m looking outwards, the test
    image transform's geometry; the pixels random (the export traces shapes and the check compares
    the runtimes on them)."""
    import math

    n, (h, w) = cfg.num_cameras, cfg.image_size
    gen = torch.Generator().manual_seed(0)
    k = torch.tensor([[0.6 * w, 0, (w - 1) / 2], [0, 0.6 * w, (h - 1) / 2], [0, 0, 1.0]]).repeat(n, 1, 1)
    cam2lidar = torch.eye(4).repeat(n, 1, 1)
    for i in range(n):
        a = 2 * math.pi * i / n
        # camera axes (x right, y down, z forward) in the LiDAR frame (x forward, y left, z up)
        cam2lidar[i, :3, :3] = torch.tensor([[math.sin(a), 0, math.cos(a)], [-math.cos(a), 0, math.sin(a)],
                                             [0, -1.0, 0]])
        cam2lidar[i, 2, 3] = 1.5
    inputs = {"images": torch.randn(n, 3, h, w, generator=gen), "intrinsics": k, "cam2lidar": cam2lidar,
              "ida": torch.eye(3).repeat(n, 1, 1)}
    if cfg.key_frames == 2:
        back = torch.eye(4)
        back[0, 3] = -2.0
        inputs.update(prev_images=torch.randn(n, 3, h, w, generator=gen), prev_intrinsics=k.clone(),
                      prev_cam2lidar=back @ cam2lidar)
    return inputs


def _register_deform_conv(opset: int) -> None:
    """torchvision's deform_conv2d as ONNX's DeformConv (same offset layout, verified by the tests)."""
    from torch.onnx import register_custom_op_symbolic, symbolic_helper

    def deform_conv(g, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                    groups, offset_groups, use_mask):
        ints = [symbolic_helper._maybe_get_const(v, "i")
                for v in (stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups)]
        sh, sw, ph, pw, dh, dw, groups_i, offset_groups_i = ints
        inputs = [input, weight, offset, bias]
        if symbolic_helper._maybe_get_const(use_mask, "b"):
            inputs.append(mask)
        return g.op("DeformConv", *inputs, dilations_i=[dh, dw], group_i=groups_i, offset_group_i=offset_groups_i,
                    pads_i=[ph, pw, ph, pw], strides_i=[sh, sw])

    register_custom_op_symbolic("torchvision::deform_conv2d", deform_conv, opset)


def load_student(checkpoint: str | Path, device: str | torch.device = "cpu", use_ema: bool = True
                 ) -> tuple[BevStudent, Any, dict[str, Any]]:
    """The inference model of a training checkpoint (EMA weights when the run kept them), its
    TrainConfig, and what it is: {"step", "ema" (whether EMA weights were loaded), "provenance"}. An
    `.onnx` file (`x3kd-student export-onnx`) loads as an `OnnxStudent` run by onnxruntime."""
    if Path(checkpoint).suffix == ".onnx":
        runtime = OnnxStudent(checkpoint, device)
        return runtime, runtime.config, {"step": runtime.step, "ema": runtime.ema, "provenance": runtime.provenance}
    ckpt = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ckpt["config"], f"{checkpoint}: config")
    # the checkpoint holds every weight: the pretrained backbone file it started from is not needed
    model = build_student(replace(cfg.student, backbone=replace(cfg.student.backbone, weights=None)))
    ema = use_ema and ckpt.get("ema") is not None
    try:
        model.load_state_dict(ckpt["ema"] if ema else ckpt["model"])  # a released file's float16 is cast back
    except RuntimeError as e:
        raise UserInputError(f"{checkpoint}: its weights do not fit the student its config describes "
                             f"({' '.join(str(e).split())[:200]})") from None
    ema = ema or bool((ckpt.get("released_from") or {}).get("ema"))
    info = {"step": int(ckpt.get("step", 0)), "ema": ema, "provenance": ckpt.get("provenance")}
    return model.to(device).eval(), cfg, info


def export_onnx(checkpoint: str | Path, out: str | Path, *, opset: int | None = None, use_ema: bool = True,
                check: bool = True) -> dict[str, Any]:
    """Export the camera student of `checkpoint` to `out` (ONNX, opset `opset`, default the lowest its
    layers need) with its config in the file's metadata. With `check`, onnxruntime runs the file on
    example inputs beside PyTorch; the returned dict holds the largest difference of any output
    (`max_abs_diff`), the opset and the output names."""
    onnx = _require("onnx")
    model, cfg, info = load_student(checkpoint, "cpu", use_ema)
    if cfg.student.modality != "camera":
        raise UserInputError(f"{checkpoint}: a {cfg.student.modality} student; export-onnx exports camera students")
    deformable = cfg.student.depth_net.deformable
    needed = DEFORMABLE_OPSET if deformable else MIN_OPSET
    opset = needed if opset is None else int(opset)
    from torch.onnx._constants import ONNX_MAX_OPSET

    if opset < needed or opset > ONNX_MAX_OPSET:
        why = "its deformable conv needs ONNX's DeformConv" if deformable else "the voxel pooling needs a summing scatter"
        raise UserInputError(f"--opset {opset}: this student exports with opsets {needed}..{ONNX_MAX_OPSET} ({why})")
    if deformable:
        _register_deform_conv(opset)
    inputs = example_inputs(cfg.student)
    names = list(inputs)
    wrapped = _ExportedStudent(model).eval()
    with torch.no_grad():
        reference = wrapped(*inputs.values())
        heads = model(StudentBatch(bda=torch.eye(4)[None], **{k: v[None] for k, v in inputs.items()})).head_outputs
    outputs = [f"task{t}_{name}" for t, task in enumerate(heads) for name in sorted(task)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python control flow
        torch.onnx.export(wrapped, tuple(inputs.values()), str(tmp), input_names=names, output_names=outputs,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    graph = onnx.load(str(tmp))
    meta = {"x3kd_config": json.dumps(cfg.to_dict()), "x3kd_step": str(info["step"]), "x3kd_ema": str(info["ema"]),
            "x3kd_provenance": json.dumps(info["provenance"], default=str), "x3kd_inputs": json.dumps(names),
            "x3kd_outputs": json.dumps(outputs)}
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(tmp))
    tmp.replace(out)
    result: dict[str, Any] = {"opset": opset, "inputs": names, "outputs": outputs, "step": info["step"]}
    if check:
        runtime = OnnxStudent(out)
        got = runtime.run({k: v.numpy() for k, v in inputs.items()})
        result["max_abs_diff"] = max(float((r - torch.from_numpy(g)).abs().max()) for r, g in zip(reference, got))
        result["max_abs_value"] = max(float(r.abs().max()) for r in reference)
    return result


class OnnxStudent(BevStudent):
    """An exported camera student run by onnxruntime, behind `BevStudent`'s interface: calling it on a
    `StudentBatch` gives its head maps (the other `StudentOutputs` fields are empty tensors), `predict`
    decodes them with the shared coder, `config` is the student's TrainConfig from the file."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        super().__init__()
        onnx_runtime = _require("onnxruntime")
        from detection.centerpoint_coder import BoxCoderConfig

        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"{path}: ONNX file not found")
        try:
            self.session = onnx_runtime.InferenceSession(str(path), providers=_providers(onnx_runtime, device))
        except Exception as e:  # noqa: BLE001  (onnxruntime raises its own types for a bad file)
            raise UserInputError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:160]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "x3kd_config" not in meta:
            raise UserInputError(f"{path}: not exported by `x3kd-student export-onnx` (no x3kd config in its metadata)")
        self.config = TrainConfig.from_dict(json.loads(meta["x3kd_config"]), f"{path}: config")
        self.step = int(meta.get("x3kd_step", 0))
        self.ema = meta.get("x3kd_ema") == "True"
        self.provenance = json.loads(meta.get("x3kd_provenance", "null"))
        self.input_names = json.loads(meta["x3kd_inputs"])
        self.output_keys = [name.split("_", 1) for name in json.loads(meta["x3kd_outputs"])]
        s = self.config.student
        self.tasks = s.class_setup.tasks
        self.box_coder = BoxCoderConfig.on_grid(s.grid, s.test)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c for task in self.tasks for c in task)

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """The raw outputs (numpy) for numpy inputs named as the file's."""
        return self.session.run(None, {name: feeds[name] for name in self.input_names})

    def forward(self, batch: StudentBatch) -> StudentOutputs:
        per_sample = []
        for b in range(batch.batch_size):
            feeds = {name: getattr(batch, name)[b].detach().float().cpu().numpy() for name in self.input_names}
            per_sample.append(self.run(feeds))
        heads: list[dict[str, torch.Tensor]] = [{} for _ in self.tasks]
        for i, (task, name) in enumerate(self.output_keys):
            heads[int(task[4:])][name] = torch.cat([torch.from_numpy(o[i]) for o in per_sample]).to(batch.bda.device)
        empty = torch.empty(0)
        return StudentOutputs(None, None, empty, empty, heads)


def _providers(onnx_runtime: Any, device: str | torch.device) -> list[str]:
    available = onnx_runtime.get_available_providers()
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
