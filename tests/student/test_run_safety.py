"""A run is never silently wrong: each of these paths ended with exit 0 and a wrong or lost result
before; now each refuses in one line (exit 2) or recovers."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cache_schema import CacheReader
from student.cli import main
from tests.student.run_paths import REPO, TINY_YAML

QUICK = ["--set", "train.steps=1", "--set", "loss.xis.enabled=false"]


def _train(cache, dataroot, out, *extra):
    return CliRunner().invoke(main, ["train", "--cache", str(cache), "--dataroot", str(dataroot), "--config",
                                     str(TINY_YAML), "--out", str(out), *QUICK, *extra])


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    return lines[0]


def test_an_existing_run_directory_is_refused_unless_resumed_or_overwritten(train_cache, synthetic_dataroot, tmp_path):
    out = tmp_path / "run"
    assert _train(train_cache, synthetic_dataroot, out).exit_code == 0
    first = sorted((out / "checkpoints").iterdir())
    line = _one_line(_train(train_cache, synthetic_dataroot, out))
    assert "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert sorted((out / "checkpoints").iterdir()) == first  # nothing touched
    assert "contradict" in _one_line(_train(train_cache, synthetic_dataroot, out, "--resume", "--overwrite"))
    r = _train(train_cache, synthetic_dataroot, out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert len(list((out / "tensorboard").iterdir())) == 1  # the old run's events are gone


def test_two_trains_racing_into_one_out_one_trains_the_other_is_refused(train_cache, synthetic_dataroot, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "student.cli", "train", "--cache", str(train_cache), "--dataroot",
           str(synthetic_dataroot), "--config", str(TINY_YAML), "--out", str(out), "--quiet", *QUICK]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    both = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in both)
    assert [code for code, _ in results] == [0, 2], results
    refusal = results[1][1].strip().splitlines()
    assert len(refusal) == 1 and ("another writer holds this run directory" in refusal[0]
                                  or "already holds a run" in refusal[0]), refusal
    steps = [json.loads(line) for line in (out / "samples_rank0.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "indices" in s] == [0]  # one run's one step, not two mixed
    assert not (out / ".x3kd-lease.json").exists()


def test_a_dataroot_with_other_images_is_refused(train_cache, synthetic_dataroot, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(synthetic_dataroot, other)
    image = next(p for p in sorted((other / "samples").rglob("*.jpg")))
    from PIL import Image

    with Image.open(image) as im:  # the same file name, another picture (re-encoded: another size)
        im.convert("RGB").save(image, quality=20)
    line = _one_line(_train(train_cache, other, tmp_path / "run"))
    assert "camera images are not the ones" in line and str(other) in line


def test_resume_refuses_another_cache_and_names_changed_config_keys(train_cache, val_cache, synthetic_dataroot,
                                                                     tmp_path):
    out = tmp_path / "run"
    assert _train(train_cache, synthetic_dataroot, out).exit_code == 0
    line = _one_line(_train(val_cache, synthetic_dataroot, out, "--resume"))
    assert "another cache" in line and "split" in line and "mini_train" in line and "mini_val" in line
    line = _one_line(_train(train_cache, synthetic_dataroot, out, "--resume", "--set", "optim.lr=0.1",
                            "--set", "train.steps=2"))
    assert "optim.lr" in line and "train.steps" not in line.split("only")[0]
    # More steps and other logging are fine.
    r = _train(train_cache, synthetic_dataroot, out, "--resume", "--set", "train.steps=2", "--set", "train.log_every=5")
    assert r.exit_code == 0, r.output
    ckpt = torch.load(out / "checkpoints" / "step_0000002.pt", weights_only=True)
    prov = ckpt["provenance"]
    assert prov["cache"]["dataset"]["split"] == "mini_train" and prov["cache"]["lidar_teacher"]["name"]
    assert prov["dataroot_tables_sha256"] and prov["software"]["x3kd"]


def test_eval_says_what_the_student_was_distilled_from_and_checks_the_dataroot(train_cache, synthetic_dataroot,
                                                                                tmp_path):
    out = tmp_path / "run"
    assert _train(train_cache, synthetic_dataroot, out).exit_code == 0
    ckpt = out / "checkpoints" / "step_0000001.pt"
    args = ["eval", "--checkpoint", str(ckpt), "--version", "v1.0-mini", "--split", "mini_val"]
    r = CliRunner().invoke(main, [*args, "--dataroot", str(synthetic_dataroot), "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    assert "distilled from: LiDAR teacher centerpoint-pillar02 (random init), image teacher maskrcnn" in r.stdout
    assert "step 1, raw weights" in r.stdout
    other = tmp_path / "other"
    shutil.copytree(synthetic_dataroot, other)
    scene = json.loads((other / "v1.0-mini" / "scene.json").read_text())
    scene[0]["description"] = "another dataset with the same scene names"
    (other / "v1.0-mini" / "scene.json").write_text(json.dumps(scene))
    line = _one_line(CliRunner().invoke(main, [*args, "--dataroot", str(other), "--out", str(tmp_path / "e2")]))
    assert "tables differ" in line and "--other-dataroot" in line
    r = CliRunner().invoke(main, [*args, "--dataroot", str(other), "--out", str(tmp_path / "e3"), "--other-dataroot"])
    assert r.exit_code == 0, r.output


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(synthetic_dataroot, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "payload": _RunsCode(str(marker))}, path)
    line = _one_line(CliRunner().invoke(main, ["eval", "--checkpoint", str(path), "--dataroot",
                                                str(synthetic_dataroot), "--version", "v1.0-mini", "--split",
                                                "mini_val", "--out", str(tmp_path / "e")]))
    assert "refused" in line and "system" in line
    assert not marker.exists()


def _corrupt_one_chunk(url: str, key: str, index: int) -> None:
    import zarr

    array = zarr.open_group(url, mode="r")[key]
    shard_size = array.metadata.chunk_grid.chunk_shape[0]
    shard = index // shard_size
    path = Path(url) / key / "c" / str(shard) / "/".join(["0"] * (array.ndim - 1))
    data = bytearray(path.read_bytes())
    table = np.frombuffer(bytes(data[-16 * shard_size - 4:-4]), dtype="<u8").reshape(shard_size, 2)
    offset, nbytes = table[index % shard_size]
    data[int(offset + nbytes // 2)] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupt_chunk_stops_training_before_it_starts_and_export_repair_fixes_it(synthetic_dataroot, tmp_path):
    from teacher_export.cli import main as cache_cli
    from teacher_export.export import export
    from tests.teacher_export.exports import small_export_options

    url = str(tmp_path / "cache.zarr")
    options = small_export_options(synthetic_dataroot, url)
    export(options, progress=False)
    original = CacheReader(url)[1].lidar_teacher.bev_features
    _corrupt_one_chunk(url, "lidar_teacher/bev_features", 1)
    token = CacheReader(url, groups=["meta"])[1].token
    line = _one_line(_train(url, synthetic_dataroot, tmp_path / "run"))
    assert token in line and "export --repair" in line
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
    # Reading it outside training is one line too.
    with pytest.raises(Exception, match="re-export it with `x3kd-cache export --repair`"):
        CacheReader(url)[1]

    args = ["export", "--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini", "--split", "mini_train",
            "--out", url, "--lidar-config", str(options.lidar_config), "--random-init", "--num-sweeps", "2",
            "--shard-size", "2"]
    yaml_path = tmp_path / "options.yaml"
    yaml_path.write_text(json.dumps({"image_options": options.image_options, "max_gt_boxes": 64, "max_instances": 4}))
    r = CliRunner().invoke(cache_cli, [*args, "--config", str(yaml_path), "--repair"])
    assert r.exit_code == 0, r.output
    assert "1 corrupt or missing sample(s) to export again" in r.output and "1 samples written" in r.output
    assert CliRunner().invoke(cache_cli, ["validate", url]).exit_code == 0
    np.testing.assert_array_equal(CacheReader(url)[1].lidar_teacher.bev_features, original)
    assert _train(url, synthetic_dataroot, tmp_path / "run").exit_code == 0


def test_sigterm_writes_a_checkpoint_and_resume_loses_no_step(train_cache, synthetic_dataroot, tmp_path):
    """A pre-empted run (SIGTERM) ends with the checkpoint of the step it reached; --resume then ends
    where an uninterrupted run ends, bit for bit (deterministic CPU mode)."""
    common = [sys.executable, "-m", "student.cli", "train", "--cache", train_cache, "--dataroot",
              str(synthetic_dataroot), "--config", str(TINY_YAML), "--set", "train.steps=16", "--set",
              "train.deterministic=true", "--set", "loss.xis.enabled=false", "--set", "data.augment=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    proc = subprocess.Popen([*common, "--out", str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = out / "samples_rank0.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted (SIGTERM) at step" in err and "--resume" in err
    written = sorted((out / "checkpoints").glob("step_*.pt"))
    assert len(written) == 1 and written[0].name != "step_0000016.pt"
    subprocess.run([*common, "--out", str(out), "--resume"], cwd=REPO, env=env, check=True, capture_output=True)
    subprocess.run([*common, "--out", str(tmp_path / "straight")], cwd=REPO, env=env, check=True, capture_output=True)
    a = torch.load(out / "checkpoints" / "step_0000016.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "straight" / "checkpoints" / "step_0000016.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_remaining_tracebacks_are_one_line(train_cache, synthetic_dataroot, tmp_path, monkeypatch):
    from teacher_export.cli import main as cache_cli

    if not torch.cuda.is_available():
        line = _one_line(CliRunner().invoke(main, ["eval", "--checkpoint", str(tmp_path / "x.pt"), "--dataroot",
                                                    str(synthetic_dataroot), "--version", "v1.0-mini", "--split",
                                                    "mini_val", "--out", str(tmp_path / "e"), "--device", "cuda"]))
        assert "no CUDA GPU" in line
        line = _one_line(CliRunner().invoke(cache_cli, ["export", "--dataroot", str(synthetic_dataroot), "--version",
                                                         "v1.0-mini", "--split", "mini_train", "--out",
                                                         str(tmp_path / "c.zarr"), "--random-init", "--device",
                                                         "cuda"]))
        assert "no CUDA GPU" in line
    line = _one_line(CliRunner().invoke(cache_cli, ["export", "--dataroot", str(synthetic_dataroot), "--version",
                                                     "v1.0-mini", "--split", "mini_train", "--out",
                                                     "memory://x3kd/c.zarr", "--random-init"]))
    assert "disappears when the command ends" in line
    # The grid mismatch names the config that fits; the width mismatch says the --set to use.
    line = _one_line(_train(train_cache, synthetic_dataroot, tmp_path / "r1", "--config",
                            str(REPO / "configs" / "tiny_pillar02.yaml")))
    assert "configs/tiny.yaml" in line
    line = _one_line(_train(train_cache, synthetic_dataroot, tmp_path / "r2", "--set",
                            "model.teacher_bev_channels=64"))
    assert "--set model.teacher_bev_channels=48" in line
    for cli in (main, cache_cli):
        r = CliRunner().invoke(cli, ["--version"])
        assert r.exit_code == 0 and "x3kd" in r.output


def test_an_unfinished_sample_is_named_not_read(train_cache, tmp_path):
    import zarr

    copy = tmp_path / "copy.zarr"
    shutil.copytree(train_cache, copy)
    zarr.open_group(str(copy), mode="r+")["meta/done"][1] = 0
    reader = CacheReader(str(copy))
    assert reader.num_done == len(reader) - 1 and reader.tokens[1] == ""
    with pytest.raises(Exception, match="sample 1 is not exported yet"):
        reader[1]


def test_s3_without_credentials_is_one_line(s3_server, monkeypatch):
    from cache_schema import UserInputError

    options = s3_server("x3kd-nocreds")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask the instance-metadata address
    with pytest.raises(UserInputError, match="s3fs reads credentials from AWS_ACCESS_KEY_ID") as e:
        CacheReader("s3://x3kd-nocreds/cache.zarr",
                    storage_options={"endpoint_url": options["endpoint_url"], "skip_instance_cache": True})
    assert "\n" not in str(e.value)


def test_export_ctrl_c_says_how_to_continue(synthetic_dataroot, tmp_path, monkeypatch):
    import teacher_export.export as export_module
    from teacher_export.cli import main as cache_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "export", interrupted)
    r = CliRunner().invoke(cache_cli, ["export", "--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini",
                                       "--split", "mini_train", "--out", str(tmp_path / "c.zarr"), "--random-init"])
    assert r.exit_code == 130 and "run the same command again to continue" in r.stderr


def test_file_urls_work_for_new_stores(synthetic_dataroot, tmp_path):
    from teacher_export.cli import main as cache_cli
    from tests.teacher_export.exports import SMALL_LIDAR_CONFIG

    url = f"file://{tmp_path}/new.zarr"
    r = CliRunner().invoke(cache_cli, ["export", "--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini",
                                       "--split", "mini_train", "--out", url, "--random-init", "--image-teacher", "none",
                                       "--lidar-config", str(SMALL_LIDAR_CONFIG), "--num-sweeps", "2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "new.zarr" / "zarr.json").is_file()
    assert CliRunner().invoke(cache_cli, ["validate", url]).exit_code == 0
    assert CacheReader(url).num_done == 3


def test_eval_limit_scores_the_first_samples_only(train_cache, synthetic_dataroot, tmp_path):
    out = tmp_path / "run"
    assert _train(train_cache, synthetic_dataroot, out).exit_code == 0
    r = CliRunner().invoke(main, ["eval", "--checkpoint", str(out / "checkpoints" / "step_0000001.pt"), "--dataroot",
                                  str(synthetic_dataroot), "--version", "v1.0-mini", "--split", "mini_val",
                                  "--out", str(tmp_path / "e"), "--limit", "2"])
    assert r.exit_code == 0, r.output
    assert "first 2 of the split's 3 samples" in r.stdout
    results = json.loads((tmp_path / "e" / "results_nusc.json").read_text())["results"]
    assert len(results) == 2
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["limit"] == 2


def test_a_store_of_another_regression_encoding_is_refused_for_xod(train_cache, synthetic_dataroot, tmp_path):
    """The encoding is part of the store contract: recorded at export, checked before X-OD trains on it."""
    import zarr

    from cache_schema.layout import REGRESSION_ENCODING, StoreConfig

    assert CacheReader(train_cache).config.regression == REGRESSION_ENCODING
    copy = tmp_path / "other_encoding.zarr"
    shutil.copytree(train_cache, copy)
    root = zarr.open_group(str(copy), mode="r+")
    attrs = dict(root.attrs["x3kd"])
    attrs["config"] = {**attrs["config"], "regression": {**attrs["config"]["regression"], "dims": "metres"}}
    root.attrs["x3kd"] = attrs
    line = _one_line(_train(copy, synthetic_dataroot, tmp_path / "run"))
    assert "another encoding" in line and "dims: 'metres' != 'log'" in line
    r = _train(copy, synthetic_dataroot, tmp_path / "run2", "--set", "loss.xod.enabled=false")
    assert r.exit_code == 0, r.output
    # A schema 1.0 store recorded no encoding: it is read as the one every 1.0 export wrote.
    legacy = {k: v for k, v in CacheReader(train_cache).config.to_json().items() if k != "regression"}
    assert StoreConfig.from_json(legacy).regression == REGRESSION_ENCODING


def test_an_out_under_a_file_is_one_line_and_writes_nothing(synthetic_dataroot, tmp_path):
    from teacher_export.cli import main as cache_cli

    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    line = _one_line(CliRunner().invoke(cache_cli, ["export", "--dataroot", str(synthetic_dataroot), "--version",
                                                     "v1.0-mini", "--split", "mini_train", "--out",
                                                     str(blocker / "cache.zarr"), "--random-init",
                                                     "--image-teacher", "none"]))
    assert "a file is in the way" in line and blocker.read_text() == "not a directory"
