"""The student without PyTorch: ONNX export checked against PyTorch with onnxruntime for the tiny, lab
and BEVDepth configs, `eval --onnx` and `predict` through the same decoding and results writer, and the
refusals."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from cache_schema.errors import UserInputError
from detection.weights import save_atomic
from student.cli import main
from student.models.student import build_student
from student.train_config import load_train_config
from tests.student.run_paths import REPO, TINY_YAML

pytest.importorskip("onnxruntime")


def _checkpoint(path, config, overrides=(), offsets: bool = False):
    """A student of `config` with weights like a trained one's (BatchNorm statistics away from 0/1 and,
    with `offsets`, deformable-conv offsets away from zero, so the offset layout matters)."""
    cfg = load_train_config(config, ["model.backbone.weights=null", *overrides])
    torch.manual_seed(0)
    model = build_student(cfg.student)
    g = torch.Generator().manual_seed(1)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        if offsets and name.endswith("conv_offset"):
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
    save_atomic({"model": model.state_dict(), "ema": None, "step": 7, "config": cfg.to_dict(), "provenance": None},
                path)
    return path


@pytest.mark.parametrize("config, overrides, opset", [
    ("tiny.yaml", (), 16),
    ("lab.yaml", (), 16),
    # BEVDepth's published student: R50, SECONDFPN, ASPP, deformable conv, depth aggregation, 2 key frames
    ("bevdepth_r50_256x704_2key_cbgs_da_ema.yaml", ("model.image_size=[64,176]",), 19),
])
def test_onnxruntime_gives_what_pytorch_gives(config, overrides, opset, tmp_path):
    from student.deploy import export_onnx

    ckpt = _checkpoint(tmp_path / "student.pt", REPO / "configs" / config, overrides, offsets=True)
    result = export_onnx(ckpt, tmp_path / "student.onnx")
    assert result["opset"] == opset and result["step"] == 7
    assert result["max_abs_diff"] <= 1e-4 * max(1.0, result["max_abs_value"]), result


def test_eval_and_predict_of_an_exported_student_match_its_checkpoint(train_cache, synthetic_dataroot, tmp_path):
    from student.train import train

    cfg = load_train_config(TINY_YAML, ["train.steps=2", "loss.xis.enabled=false"])
    ckpt = train(train_cache, synthetic_dataroot, cfg, tmp_path / "run", progress=False)
    onnx_file = tmp_path / "student.onnx"
    runner = CliRunner()
    r = runner.invoke(main, ["export-onnx", "--checkpoint", str(ckpt), "--out", str(onnx_file)])
    assert r.exit_code == 0, r.output
    assert "opset 16" in r.stdout and "largest difference" in r.stdout
    common = ["--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini", "--split", "mini_val",
              "--score-threshold", "0.0"]
    for flag, student, out in (("--checkpoint", ckpt, "eval_pt"), ("--onnx", onnx_file, "eval_onnx")):
        r = runner.invoke(main, ["eval", flag, str(student), *common, "--out", str(tmp_path / out)])
        assert r.exit_code == 0, r.output
    a, b = (json.loads((tmp_path / d / "results_nusc.json").read_text())["results"] for d in ("eval_pt", "eval_onnx"))
    assert a.keys() == b.keys() and sum(len(v) for v in a.values()) > 0
    # the same decoded boxes, from the same coder: every box of one has its twin in the other, but for
    # the tail where scores a few 1e-7 apart (an untrained student's) swap across the top-k cut
    def boxes(results):
        return {(d["detection_name"], *(round(v, 2) for v in d["translation"])): d["detection_score"]
                for recs in results.values() for d in recs}
    pa, pb = boxes(a), boxes(b)
    assert len(pa) > 20 and len(pa.keys() & pb.keys()) >= 0.95 * len(pa)
    assert all(abs(pa[k] - pb[k]) < 1e-4 for k in pa.keys() & pb.keys())
    ma, mb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("eval_pt", "eval_onnx"))
    assert ma["mAP"] == pytest.approx(mb["mAP"], abs=1e-6) and mb["step"] == 2

    # predict on a split without annotations (as v1.0-test is): a submission file, nothing scored
    root = tmp_path / "no_annotations"
    shutil.copytree(synthetic_dataroot, root, symlinks=True)
    for table in ("sample_annotation", "instance"):
        (root / "v1.0-mini" / f"{table}.json").write_text("[]")
    submission = tmp_path / "submission.json"
    r = runner.invoke(main, ["predict", "--onnx", str(onnx_file), "--dataroot", str(root), "--version", "v1.0-mini",
                             "--split", "mini_val", "--out", str(submission), "--score-threshold", "0.0"])
    assert r.exit_code == 0, r.output
    written = json.loads(submission.read_text())
    assert written["meta"]["use_camera"] and not written["meta"]["use_lidar"]
    assert written["results"].keys() == b.keys()


def test_refusals_are_one_line(train_cache, tmp_path):
    ckpt = _checkpoint(tmp_path / "tiny.pt", TINY_YAML)
    runner = CliRunner()
    cases = [
        (["export-onnx", "--checkpoint", str(ckpt), "--out", str(tmp_path / "x.onnx"), "--opset", "15"], "--opset 15"),
        (["eval", "--onnx", str(ckpt), "--dataroot", ".", "--version", "v", "--split", "s", "--out", "o"],
         "expected an .onnx file"),
        (["eval", "--dataroot", ".", "--version", "v", "--split", "s", "--out", "o"], "exactly one student"),
    ]
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    cases.append((["predict", "--onnx", str(tmp_path / "bad.onnx"), "--dataroot", ".", "--version", "v", "--split",
                   "s", "--out", str(tmp_path / "p.json")], "not a readable ONNX model"))
    # a checkpoint whose weights belong to another config
    other = torch.load(ckpt, weights_only=True)
    other["config"] = load_train_config(REPO / "configs" / "lab.yaml", ["model.backbone.weights=null"]).to_dict()
    save_atomic(other, tmp_path / "mismatch.pt")
    cases.append((["export-onnx", "--checkpoint", str(tmp_path / "mismatch.pt"), "--out", str(tmp_path / "m.onnx")],
                  "do not fit the student its config describes"))
    for args, words in cases:
        r = runner.invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and words in lines[0], (args, r.stderr)
    radar = load_train_config(REPO / "configs" / "radar_pillar02.yaml")
    save_atomic({"model": build_student(radar.student).state_dict(), "ema": None, "step": 0,
                 "config": radar.to_dict(), "provenance": None}, tmp_path / "radar.pt")
    from student.deploy import export_onnx

    with pytest.raises(UserInputError, match="exports camera students"):
        export_onnx(tmp_path / "radar.pt", tmp_path / "radar.onnx")
