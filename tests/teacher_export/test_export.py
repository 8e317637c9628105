import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner

from cache_schema import CacheReader, UserInputError, validate
from cache_schema.quantize import decode, encode, relative_l2
from teacher_export.cli import main as cli
from dataset_access.nuscenes.samples import NuScenesSamples
from teacher_export.export import Exporter, export
from tests.teacher_export.exports import SMALL_LIDAR_CONFIG, small_export_options

REPO = Path(__file__).resolve().parents[2]


def raw_arrays(url):
    root = zarr.open_group(url, mode="r")
    return {f"{g}/{n}": a[:] for g, group in root.groups() for n, a in group.arrays()}


@pytest.fixture(scope="module")
def exported(synthetic_dataroot, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "cache.zarr"
    options = small_export_options(synthetic_dataroot, out)
    result = export(options, progress=False)
    return options, result


def test_export_writes_a_clean_store_with_everything_the_student_needs(exported):
    options, result = exported
    assert result.written == 3 and result.skipped == 0
    assert validate(options.out).ok
    reader = CacheReader(options.out)
    samples = NuScenesSamples(options.dataroot, options.version, options.split, num_sweeps=options.num_sweeps)
    assert reader.tokens == list(samples.sample_tokens)
    prov = reader.meta.provenance
    assert prov["lidar_teacher"]["name"] == "centerpoint-pillar02"
    assert prov["lidar_teacher"]["config"]["random_init"] is True
    assert prov["image_teacher"]["name"] == "maskrcnn"
    assert prov["dataset"] == {**prov["dataset"], "version": "v1.0-mini", "split": "mini_train"}
    assert reader.config.grid.shape == (64, 64)  # the small teacher's grid is the store's grid
    r = reader.config.grid.point_cloud_range
    dropped = 0
    for i, info in enumerate(samples):
        got = reader[i]
        # training GT centred on the store's BEV grid (here +-25.6 m)
        on_grid = ((info.gt_boxes[:, 0] >= r[0]) & (info.gt_boxes[:, 0] < r[3]) & (info.gt_boxes[:, 1] >= r[1])
                   & (info.gt_boxes[:, 1] < r[4]))
        dropped += int((~on_grid).sum())
        n = int(on_grid.sum())
        assert got.gt.count == n
        np.testing.assert_allclose(got.gt.boxes[:n], info.gt_boxes[on_grid], rtol=1e-6)
        assert np.all(got.gt.labels[n:] == -1)
        assert got.calib.image_paths == list(info.calib.image_paths)
        np.testing.assert_allclose(got.calib.cam_intrinsics, info.calib.cam_intrinsics, rtol=1e-6)
        depth = got.depth.depth
        assert depth.shape == (6, 90 // 4, 160 // 4)
        assert (depth > 0).sum() > 50 and depth.max() < 120
        heat = got.lidar_teacher.heatmaps
        assert heat.shape == (10, 64, 64) and 0 <= heat.min() and heat.max() <= 1
        labels = got.image_teacher.labels
        assert labels.shape == (6, 4) and set(np.unique(labels)) <= set(range(-1, 10))
    assert dropped > 0  # the synthetic split has objects beyond +-25.6 m: the grid filter ran


def test_cached_teacher_maps_equal_a_direct_teacher_run(exported):
    options, _ = exported
    exporter = Exporter(options)
    info = exporter.samples[1]
    direct = exporter.lidar_teacher([exporter.samples.load_points(info)])[0]
    cached = CacheReader(options.out, groups=["lidar_teacher"])[1]
    # the cache holds exactly the teacher's features, reduced by the store's int8 quantization
    stored, affine = encode(direct.bev_features, "int8")
    np.testing.assert_allclose(cached.lidar_teacher.bev_features, decode(stored, "int8", affine), rtol=1e-5, atol=1e-6)
    assert relative_l2(direct.heatmaps, cached.lidar_teacher.heatmaps) < 1e-3  # float16
    assert relative_l2(direct.regression, cached.lidar_teacher.regression) < 1e-3


def test_rerun_writes_nothing(exported):
    options, _ = exported
    result = export(options, progress=False)
    assert result.written == 0 and result.skipped == 3


def test_sigkill_during_export_then_resume_equals_uninterrupted(synthetic_dataroot, tmp_path):
    child = [sys.executable, "-m", "tests.teacher_export.export_child", str(synthetic_dataroot)]
    reference = tmp_path / "reference.zarr"
    assert subprocess.run(child + [str(reference)], cwd=REPO, capture_output=True).returncode == 0
    resumed = tmp_path / "resumed.zarr"
    killed = subprocess.run(child + [str(resumed), "--kill-after", "1"], cwd=REPO, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert not CacheReader(str(resumed)).done_mask.any()  # sample 0 was buffered, its shard unfinished
    finished = subprocess.run(child + [str(resumed)], cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert validate(str(resumed)).ok
    a, b = raw_arrays(str(reference)), raw_arrays(str(resumed))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_other_teacher_on_an_existing_store_is_refused(exported):
    options, _ = exported
    result = CliRunner().invoke(cli, [
        "export", "--dataroot", options.dataroot, "--version", "v1.0-mini", "--split", "mini_train",
        "--out", options.out, "--lidar-config", str(SMALL_LIDAR_CONFIG), "--image-teacher", "none",
        "--random-init", "--num-sweeps", "2", "--shard-size", "2"])
    assert result.exit_code == 2
    assert "existing store" in result.output


@pytest.mark.parametrize("content", [b"not a checkpoint", "wrong-keys"])
def test_bad_checkpoint_is_one_line_exit_2(synthetic_dataroot, tmp_path, content):
    checkpoint = tmp_path / "teacher.pth"
    if content == "wrong-keys":
        import torch
        torch.save({"state_dict": {"some.other.weight": torch.zeros(3)}}, checkpoint)
    else:
        checkpoint.write_bytes(content)
    out = tmp_path / "cache.zarr"
    result = subprocess.run([sys.executable, "-m", "teacher_export.cli", "export", "--dataroot", str(synthetic_dataroot),
                             "--version", "v1.0-mini", "--split", "mini_train", "--out", str(out),
                             "--lidar-config", str(SMALL_LIDAR_CONFIG), "--lidar-checkpoint", str(checkpoint),
                             "--image-teacher", "none"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(checkpoint) in lines[0], result.stderr
    assert not out.exists()


def test_missing_checkpoint_without_random_init_is_refused(synthetic_dataroot, tmp_path):
    result = CliRunner().invoke(cli, ["export", "--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini",
                                      "--split", "mini_train", "--out", str(tmp_path / "c.zarr"),
                                      "--image-teacher", "none"])
    assert result.exit_code == 2 and "--random-init" in result.output


def test_yaml_config_with_cli_override(synthetic_dataroot, tmp_path):
    config = tmp_path / "export.yaml"
    config.write_text(json.dumps({"dataroot": str(synthetic_dataroot), "version": "v1.0-mini", "split": "mini_val",
                                  "out": str(tmp_path / "c.zarr"), "lidar_config": str(SMALL_LIDAR_CONFIG),
                                  "image_teacher": "none", "random_init": True, "num_sweeps": 1, "limit": 3}))
    result = CliRunner().invoke(cli, ["export", "--config", str(config), "--limit", "2"])
    assert result.exit_code == 0, result.output
    reader = CacheReader(str(tmp_path / "c.zarr"))
    assert len(reader) == 2 and reader.done_mask.all() and "image_teacher" not in reader.config.groups
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataroot: x\nfrobnicate: 1\n")
    result = CliRunner().invoke(cli, ["export", "--config", str(bad)])
    assert result.exit_code == 2 and "frobnicate" in result.output


def test_another_split_into_an_existing_store_names_the_split_not_a_hash(exported, synthetic_dataroot):
    options, _ = exported
    from dataclasses import replace

    from teacher_export.export import export

    with pytest.raises(UserInputError, match=r"dataset\.split: store has 'mini_train', given 'mini_val'"):
        export(replace(options, split="mini_val"), progress=False)


def _export_command(dataroot, out) -> list[str]:
    """The installed `x3kd-cache export` with the small test teacher (what a user's second terminal runs)."""
    return [sys.executable, "-m", "pipelines.cli", "export", "--dataroot", str(dataroot), "--version", "v1.0-mini",
            "--split", "mini_train", "--out", str(out), "--lidar-config", str(SMALL_LIDAR_CONFIG),
            "--image-teacher", "none", "--random-init", "--num-sweeps", "2", "--shard-size", "2"]


def test_racing_exports_never_crash_and_exactly_one_writes(synthetic_dataroot, tmp_path):
    reference = tmp_path / "reference.zarr"
    done = subprocess.run(_export_command(synthetic_dataroot, reference), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = raw_arrays(str(reference))
    for race in range(4):
        out = tmp_path / f"race{race}.zarr"
        both = [subprocess.Popen(_export_command(synthetic_dataroot, out), cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in both]
        for code, err in results:
            assert "Traceback" not in err and code in (0, 2), err
            if code == 2:  # refused in one line, naming the writer that holds the store
                assert len(err.strip().splitlines()) == 1 and "another writer holds this store" in err, err
        assert 0 in [code for code, _ in results]
        runs = CacheReader(str(out)).meta.runs
        assert len(runs) == 1 and runs[0]["written"] == 3, runs  # one writer wrote every sample, once
        got = raw_arrays(str(out))  # the store equals a single export's (the random-init teacher is seeded)
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        assert validate(str(out)).ok and not (out / ".x3kd-lease.json").exists()


def test_a_store_of_an_earlier_version_resumes(synthetic_dataroot, tmp_path):
    """A store whose recorded teacher config holds its checkpoint's path (as earlier stores did) and lacks
    an option added since with an unset default is the same teachers' store: re-running the export
    resumes it instead of refusing it."""
    from cache_schema.store import ATTRS_KEY, open_root
    from teacher_export.teachers.registry import build_image_teacher

    image = tmp_path / "image.pth"
    teacher = build_image_teacher("maskrcnn", random_init=True, class_names="nuimages")
    torch.save(teacher.model.state_dict(), image)
    out = tmp_path / "cache.zarr"
    export(small_export_options(synthetic_dataroot, out, image_checkpoint=str(image)), progress=False)
    root = open_root(str(out), "r+")
    attrs = root.attrs.asdict()[ATTRS_KEY]
    config = attrs["provenance"]["image_teacher"]["config"]
    assert config.pop("flavor", "absent") is None  # an option this version added, unset
    config["checkpoint"] = "/elsewhere/image.pth"  # what earlier versions recorded
    root.attrs[ATTRS_KEY] = attrs
    export(small_export_options(synthetic_dataroot, out, image_checkpoint=str(image)), progress=False)
    assert CacheReader(str(out)).meta.provenance["image_teacher"]["config"]["checkpoint"] == "/elsewhere/image.pth"
    changed = small_export_options(synthetic_dataroot, out, image_checkpoint=str(image),
                                   image_options={"class_names": "nuimages", "score_threshold": 0.5,
                                                  "detections_per_img": 4})
    with pytest.raises(UserInputError, match="different teachers"):
        export(changed, progress=False)
