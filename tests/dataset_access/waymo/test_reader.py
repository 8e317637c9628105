"""The Waymo v2 reader and the synthetic Waymo data: frames by key, samples for the pipeline, and the
one-line errors for bad input (a missing component file, a segment without camera calibration, a range
image that disagrees with its calibration)."""
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cache_schema.errors import UserInputError
from dataset_access.images import read_rgb
from dataset_access.synthetic.lidar import points_in_boxes
from dataset_access.synthetic.waymo import WaymoSyntheticSpec, write_waymo_dataset
from dataset_access.waymo.reader import WaymoV2
from dataset_access.waymo.samples import WaymoSamples
from dataset_access.waymo.schema import SCHEMAS, column
from teacher_export.cli import main as cache_cli

SPEC = WaymoSyntheticSpec(segments=2, frames_per_segment=2, seed=1, front_width=64, objects_per_segment=6,
                          lidar_beams=32, lidar_azimuths=128)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_waymo_dataset(tmp_path_factory.mktemp("waymo") / "v2", SPEC)


def _copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "v2"))


def test_layout_and_schema(root):
    segments = {split: sorted(p.stem for p in (root / split / "lidar").glob("*.parquet"))
                for split in ("training", "validation")}
    assert len(segments["training"]) == 1 and len(segments["validation"]) == 1
    for component, schema in SCHEMAS.items():
        path = root / "training" / component / f"{segments['training'][0]}.parquet"
        assert pq.read_schema(path).remove_metadata() == schema, component


def test_a_frame_reads_its_own_row_groups(root):
    split = WaymoV2(root, "training")
    segment = split.segments[0]
    stamps = split.timestamps(segment)
    assert len(stamps) == 2 and stamps[1] - stamps[0] == 100_000
    meta = pq.ParquetFile(split.path("camera_image", segment)).metadata
    assert meta.num_row_groups == 2  # one per frame: a filtered read touches one
    frame = split.frame(segment, int(stamps[1]))
    assert [c.name for c in frame.cameras] == ["FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"]
    assert {(c.width, c.height) for c in frame.cameras} == {(64, 43), (64, 30)}
    assert set(np.unique(frame.point_return)) == {1, 2} and len(frame.points) > 1000
    assert len(frame.boxes) > 0 and set(frame.box_names) <= {"vehicle", "pedestrian", "cyclist", "sign"}
    # the labelled point counts are what the converted points say (return 1, as the generator counts)
    first = frame.points[frame.point_return == 1]
    inside = points_in_boxes(first[:, :3].astype(np.float64), frame.boxes).sum(axis=0)
    np.testing.assert_array_equal(inside, frame.box_num_points)
    # ground points lie on the ground once the per-pixel pose and the extrinsic are applied
    ground = first[~points_in_boxes(first[:, :3].astype(np.float64), frame.boxes).any(axis=1)]
    assert np.percentile(np.abs(ground[:, 2]), 90) < 0.1


def test_samples_for_the_pipeline(root):
    samples = WaymoSamples(root, "training", num_sweeps=1)
    first, second = samples[0], samples[1]
    assert second.prev_token == first.token and len(second.sweeps) == 1 and first.sweeps == ()
    assert first.prev_token == first.token  # a segment's first frame is its own previous
    no_sweeps = WaymoSamples(root, "training")[1]
    assert no_sweeps.prev_token == first.token and no_sweeps.sweeps == ()
    images = [read_rgb(root / p) for p in second.calib.image_paths]
    assert {im.shape for im in images} == {(43, 64, 3)}  # side cameras padded to the front's height
    side = [c for c in second.cameras if c.name == "SIDE_LEFT"][0]
    assert side.valid_height == 30 and side.height == 43
    assert np.all(images[3][30:] == 0) and images[3][:30].any()
    points = samples.load_points(second)
    assert points.shape[1] == 5
    np.testing.assert_allclose(np.unique(points[:, 4]), [0.0, 0.1], atol=1e-6)  # the previous frame, 0.1 s old
    assert len(second.gt_labels) == len(second.gt_boxes) == len(second.gt_difficulty) > 0
    # every GT box is in front of the camera the generator called most visible
    cams = {c.name: i for i, c in enumerate(second.cameras)}
    names = {1: "FRONT", 2: "FRONT_LEFT", 3: "FRONT_RIGHT", 4: "SIDE_LEFT", 5: "SIDE_RIGHT"}
    frame = samples.data.frame(second.scene_token, second.timestamp)
    keep = frame.box_num_points > 0
    for box, cam in zip(second.gt_boxes, frame.synced_camera[keep]):
        in_cam = second.calib.lidar_to_camera(cams[names[int(cam)]]) @ np.append(box[:3], 1.0)
        assert in_cam[2] > 0


def test_missing_component_file_is_one_line(root, tmp_path):
    broken = _copy(root, tmp_path)
    victim = next((broken / "training" / "lidar_pose").glob("*.parquet"))
    victim.unlink()
    with pytest.raises(UserInputError, match=str(victim).replace(".", r"\.")):
        WaymoSamples(broken, "training")
    r = CliRunner().invoke(cache_cli, ["export", "--dataroot", str(broken), "--version", "waymo-v2", "--split",
                                       "training", "--out", str(tmp_path / "c.zarr"), "--lidar-teacher", "none",
                                       "--image-teacher", "none"])
    assert r.exit_code == 2 and str(victim) in r.output and "lidar_pose" in r.output


def test_segment_without_camera_calibration(root, tmp_path):
    broken = _copy(root, tmp_path)
    path = next((broken / "training" / "camera_calibration").glob("*.parquet"))
    pq.write_table(SCHEMAS["camera_calibration"].empty_table(), path)
    with pytest.raises(UserInputError, match="has no camera calibration"):
        WaymoSamples(broken, "training")[0]
    r = _export(broken, tmp_path)
    assert r.exit_code == 2 and f"{path}: segment" in r.output and len(r.output.strip().splitlines()) == 1


def test_range_image_that_disagrees_with_its_calibration(root, tmp_path):
    broken = _copy(root, tmp_path)
    path = next((broken / "training" / "lidar_calibration").glob("*.parquet"))
    table = pq.read_table(path)
    name = column("lidar_calibration", "beam_inclination.values")
    fewer = pa.array([v[:-1] for v in table.column(name).to_pylist()], type=table.schema.field(name).type)
    pq.write_table(table.set_column(table.schema.get_field_index(name), name, fewer), path)
    split = WaymoV2(broken, "training")
    segment = split.segments[0]
    with pytest.raises(UserInputError, match=r"lidar/.*\.parquet: frame \d+ laser TOP return 1: range image "
                                             r"\[32, 128, 4\] disagrees with its calibration"):
        split.frame(segment, int(split.timestamps(segment)[0]))
    r = _export(broken, tmp_path)
    assert r.exit_code == 2 and "disagrees with its calibration" in r.output
    assert len(r.output.strip().splitlines()) == 1


def _export(root: Path, tmp_path: Path):
    return CliRunner().invoke(cache_cli, ["export", "--dataroot", str(root), "--version", "waymo-v2", "--split",
                                          "training", "--out", str(tmp_path / "c.zarr"), "--lidar-teacher", "none",
                                          "--image-teacher", "none"])


def test_uniform_inclinations_from_min_max():
    """Without listed values a calibration's rows are spread uniformly over [min, max] at row centres, the
    top row the highest (the official compute_inclination, then reversed)."""
    from dataset_access.waymo.range_image import beam_inclinations

    incl = beam_inclinations(4, None, (-0.2, 0.2))
    np.testing.assert_allclose(incl, [0.15, 0.05, -0.05, -0.15])
    np.testing.assert_allclose(beam_inclinations(3, [0.0, 0.1, 0.3]), [0.3, 0.1, 0.0])
    with pytest.raises(ValueError, match="3 rows, the calibration 2"):
        beam_inclinations(3, [0.0, 0.1])


def test_not_a_split(root):
    with pytest.raises(UserInputError, match="a Waymo v2 split is one of"):
        WaymoV2(root, "val")
    with pytest.raises(UserInputError, match="no such split folder"):
        WaymoV2(root, "testing")
