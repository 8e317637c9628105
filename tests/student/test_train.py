"""x3kd-student train: checkpoints + TensorBoard, exact resume, refusals, no teacher import, DDP."""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from student.cli import main
from student.run_dir import load_checkpoint
from student.train_config import load_train_config
from student.train import train
from tests.student.run_paths import REPO, TINY_YAML

FAST = ["train.deterministic=true", "loss.xis.rpn_pre_nms_top_n=50", "loss.xis.rpn_post_nms_top_n=20"]


@pytest.fixture
def deterministic_mode():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def test_two_steps_checkpoint_events_and_exact_resume(train_cache, synthetic_dataroot, tmp_path, deterministic_mode):
    cfg = load_train_config(TINY_YAML, [*FAST, "train.steps=2", "train.checkpoint_every=1", "train.ema_decay=0.5",
                                        "train.ema_warmup=1"])
    run = tmp_path / "run"
    final = train(train_cache, synthetic_dataroot, cfg, run, progress=False)
    assert final == run / "checkpoints" / "step_0000002.pt" and final.is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run / "tensorboard"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"loss/loss_det", "loss/loss_ds", "loss/loss_xfd", "loss/loss_xat", "loss/loss_xod", "loss/loss_xis",
            "lr", "perf/samples_per_s", "perf/data_wait_fraction"} <= tags
    full = load_checkpoint(final)
    assert full["step"] == 2 and full["config"] == cfg.to_dict()

    # Interrupted after step 1: only the step-1 checkpoint exists, --resume finishes step 2.
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(run / "checkpoints" / "step_0000001.pt", resumed / "checkpoints")
    train(train_cache, synthetic_dataroot, cfg, resumed, resume=True, progress=False)
    again = load_checkpoint(resumed / "checkpoints" / "step_0000002.pt")
    one = load_checkpoint(run / "checkpoints" / "step_0000001.pt")
    for part in ("model", "criterion", "ema"):
        for k, v in full[part].items():
            assert torch.equal(v, again[part][k]), f"{part}.{k} differs after resume"
    # ... and step 2 did change the weights (the comparison above is not vacuous).
    assert any(not torch.equal(v, one["model"][k]) for k, v in full["model"].items())
    # The config's EMA warm-up is the one used: after 2 updates the decay is 0.5 (1 - e^-2) = 0.43
    # (with the default warm-up of 2000 it would be 0.0005 and the average the last weights).
    decay = 0.5 * (1 - math.exp(-2 / 1))
    moved = [k for k, v in full["model"].items() if v.is_floating_point() and not torch.equal(v, one["model"][k])]
    for k in moved:
        torch.testing.assert_close(full["ema"][k], decay * one["ema"][k] + (1 - decay) * full["model"][k])


def _one_line_exit_2(result):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    return lines[0]


def test_refuses_a_cache_with_another_grid(train_cache, synthetic_dataroot, tmp_path):
    result = CliRunner().invoke(main, [
        "train", "--cache", train_cache, "--dataroot", str(synthetic_dataroot), "--config", str(TINY_YAML),
        "--out", str(tmp_path / "run"), "--set", "model.point_cloud_range=[-12.8, -12.8, -5.0, 12.8, 12.8, 3.0]"])
    assert "grid" in _one_line_exit_2(result)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("override, words", [("loss.xfd.wieght=0.5", "wieght"), ("optim.schedule=linear", "schedule"),
                                              ("train.steps", "key.path=value")])
def test_bad_overrides_are_one_line_errors(train_cache, synthetic_dataroot, tmp_path, override, words):
    result = CliRunner().invoke(main, [
        "train", "--cache", train_cache, "--dataroot", str(synthetic_dataroot), "--config", str(TINY_YAML),
        "--out", str(tmp_path / "run"), "--set", override])
    assert words in _one_line_exit_2(result)


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_training_never_imports_teacher_export(train_cache, synthetic_dataroot, tmp_path):
    code = (
        "import sys\n"
        "from student.cli import main\n"
        "try:\n"
        f"    main(['train', '--cache', {train_cache!r}, '--dataroot', {str(synthetic_dataroot)!r},"
        f" '--config', {str(TINY_YAML)!r}, '--out', {str(tmp_path / 'run')!r}, '--set', 'train.steps=1'])\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('teacher_export', 'pipelines'))\n"
        "print('IMPORTED', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "IMPORTED []" in out.stdout
    assert (tmp_path / "run" / "checkpoints" / "step_0000001.pt").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("pseudo_labels", [True, False])
def test_torchrun_two_processes_share_the_data_and_end_with_the_same_weights(train_cache, synthetic_dataroot,
                                                                             tmp_path, pseudo_labels):
    # Without pseudo-labels X-IS is a connected zero: DDP (which runs without searching for unused
    # parameters) must still find a gradient for every X-IS head parameter on every rank.
    run = tmp_path / "ddp"
    overrides = [*FAST, "train.steps=2", *([] if pseudo_labels else ["loss.xis.score_threshold=1.0"])]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "student.cli", "train", "--cache", train_cache,
           "--dataroot", str(synthetic_dataroot), "--config", str(TINY_YAML), "--out", str(run),
           *[a for s in overrides for a in ("--set", s)]]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    last = json.loads((run / "scalars.jsonl").read_text().splitlines()[-1])
    assert (last["xis/images"] > 0) == pseudo_labels
    records = {r: [json.loads(ln) for ln in (run / f"samples_rank{r}.jsonl").read_text().splitlines()]
               for r in (0, 1)}
    finals = {r: [x for x in recs if "final_weights_sha256" in x] for r, recs in records.items()}
    assert len(finals[0]) == 1 and finals[0][0]["final_weights_sha256"] == finals[1][0]["final_weights_sha256"]
    steps = {r: [x for x in recs if "indices" in x] for r, recs in records.items()}
    assert [x["step"] for x in steps[0]] == [x["step"] for x in steps[1]] == [0, 1]
    for a, b in zip(steps[0], steps[1]):
        # Per epoch, the two ranks read disjoint halves of the (3, tail-dropped to 2) samples.
        assert a["epoch"] == b["epoch"] and not set(a["indices"]) & set(b["indices"])
    # The checkpoint (rank 0) holds those weights.
    ckpt = load_checkpoint(run / "checkpoints" / "step_0000002.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_overrides_are_typed(path):
    cfg = load_train_config(path, ["loss.xfd.weight=0.5", "data.augment=false", "optim.betas=[0.8, 0.9]"])
    assert cfg.student.losses.xfd.weight == 0.5 and isinstance(cfg.student.losses.xfd.weight, float)
    assert cfg.data.augment is False and cfg.optim.betas == (0.8, 0.9)
    # The config round-trips through the checkpoint's plain-dict form.
    from student.train_config import TrainConfig

    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_ema_warms_up_instead_of_averaging_in_the_init():
    """After one update the EMA is (nearly) the trained weights, not 99.99% the random init; the count
    of updates decides the decay, so it is kept in checkpoints."""
    from student.train import EMA

    model = torch.nn.Linear(4, 4)
    ema = EMA(model, 0.9999)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert ema.updates == 1 and ema.current_decay() < 1e-3
    torch.testing.assert_close(ema.state["weight"], model.weight.detach(), atol=1e-3, rtol=0)
    ema.updates = 40000  # 20 warm-up constants later the full decay applies
    assert abs(ema.current_decay() - 0.9999) < 1e-6


def test_ema_warmup_must_be_positive():
    from cache_schema.errors import UserInputError

    with pytest.raises(UserInputError, match="train.ema_warmup"):
        load_train_config(TINY_YAML, ["train.steps=1", "train.ema_decay=0.9", "train.ema_warmup=0"])


def test_frozen_stages_keep_their_batchnorm_statistics():
    from student.models.image_backbone import ImageBackbone

    backbone = ImageBackbone(depth=18, out_channels=16, frozen_stages=2).train()
    before = {n: b.clone() for n, b in backbone.named_buffers() if "running_mean" in n}
    backbone(torch.randn(2, 3, 64, 64))
    after = dict(backbone.named_buffers())
    frozen = [n for n in before if n.startswith(("stem.", "layer1."))]
    trained = [n for n in before if n.startswith("layer2.")]
    assert frozen and trained
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert all(not torch.equal(before[n], after[n]) for n in trained)
    assert backbone.training and not backbone.layer1.training and backbone.layer2.training


def test_xfd_standardize_uses_the_store_statistics_of_the_training_samples(train_cache, synthetic_dataroot, tmp_path):
    import numpy as np

    from cache_schema import CacheReader

    cfg = load_train_config(TINY_YAML, ["train.steps=1", "loss.xis.enabled=false", "loss.xfd.standardize=true"])
    ckpt = load_checkpoint(train(train_cache, synthetic_dataroot, cfg, tmp_path / "run", progress=False))
    mean, std = ckpt["criterion"]["teacher_mean"].numpy(), ckpt["criterion"]["teacher_std"].numpy()
    reader = CacheReader(train_cache, groups=["lidar_teacher"])
    feats = np.stack([reader[i].lidar_teacher.bev_features for i in range(len(reader))]).astype(np.float64)
    # The store keeps the features int8-quantised; the statistics come from the teacher's float maps.
    np.testing.assert_allclose(mean, feats.mean(axis=(0, 2, 3)), atol=2e-2 * np.abs(feats).max())
    np.testing.assert_allclose(std, feats.std(axis=(0, 2, 3)), rtol=5e-2, atol=1e-3)
    assert (std > 0).all()


def test_xfd_standardize_on_a_store_without_statistics_is_one_line(train_cache, synthetic_dataroot, tmp_path):
    import zarr

    copy = tmp_path / "old.zarr"
    shutil.copytree(train_cache, copy)
    root = zarr.open_group(str(copy), mode="r+")
    for key in ("bev_features_sum", "bev_features_sqsum"):
        del root["lidar_teacher"][key]
    root.attrs["x3kd"] = {**root.attrs["x3kd"], "schema_version": "1.0"}
    r = CliRunner().invoke(main, ["train", "--cache", str(copy), "--dataroot", str(synthetic_dataroot), "--config",
                                  str(TINY_YAML), "--out", str(tmp_path / "run"), "--set", "train.steps=1",
                                  "--set", "loss.xis.enabled=false", "--set", "loss.xfd.standardize=true"])
    assert r.exit_code == 2 and "schema 1.1" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output
    # Without standardisation the old store trains.
    r = CliRunner().invoke(main, ["train", "--cache", str(copy), "--dataroot", str(synthetic_dataroot), "--config",
                                  str(TINY_YAML), "--out", str(tmp_path / "run2"), "--set", "train.steps=1",
                                  "--set", "loss.xis.enabled=false"])
    assert r.exit_code == 0, r.output


def test_the_host_waits_for_the_device_only_on_logging_steps(train_cache, synthetic_dataroot, tmp_path, monkeypatch):
    import student.train as train_module

    synced_at = []
    real = train_module.synchronize
    monkeypatch.setattr(train_module, "synchronize", lambda device: (synced_at.append(device), real(device)))
    cfg = load_train_config(TINY_YAML, [*FAST, "train.steps=5", "train.log_every=2"])
    train(train_cache, synthetic_dataroot, cfg, tmp_path / "run", progress=False)
    # steps 2 and 4 (log_every) and 5 (the last): three waits in five steps, not five
    assert len(synced_at) == 3
    logged = [json.loads(ln)["step"] for ln in (tmp_path / "run" / "scalars.jsonl").read_text().splitlines()]
    assert logged == [2, 4, 5]
