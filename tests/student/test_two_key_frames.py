"""BEVDepth's second key frame: where the previous frame comes from, and that it lands where the world is."""
import numpy as np
import torch

from cache_schema.frames import invert_transform, make_transform, rotation_z
from cache_schema.grid import BevGrid
from cache_schema.views import Calib, SampleMeta
from student.models.view_transform import LSSViewTransform


def _setup(ego_pose: np.ndarray) -> Calib:
    """One forward-looking camera 1.5 m up on an ego whose pose is `ego_pose`; LiDAR at the ego origin."""
    cam_to_ego = make_transform(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), [1.0, 0.0, 1.5])
    k = np.array([[100.0, 0, 64], [0, 100.0, 32], [0, 0, 1]], np.float32)
    return Calib(["cam.jpg"], k[None], cam_to_ego[None], ego_pose[None], np.eye(4), ego_pose)


def test_a_static_point_lands_on_the_same_bev_cell_from_both_frames():
    # The ego drove 4.5 m forward and turned 10 deg between the previous key frame and this one.
    prev_pose = make_transform(rotation_z(0.3), [100.0, 50.0, 0.0])
    key_pose = prev_pose @ make_transform(rotation_z(np.radians(10)), [4.5, 0.4, 0.0])
    key, prev = _setup(key_pose), _setup(prev_pose).seen_from(_setup(key_pose))
    world = np.array([120.0, 58.0, 0.5, 1.0])  # a static point ahead of both
    grid = BevGrid((-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), (0.2, 0.2, 8.0), 4)
    cells = []
    for setup, ego in ((key, key_pose), (prev, prev_pose)):
        # where each frame's camera sees the point: pixel and depth
        p_cam = invert_transform(ego @ setup.cam_to_ego[0]) @ world
        u, v = (setup.cam_intrinsics[0] @ p_cam[:3])[:2] / p_cam[2]
        vt = LSSViewTransform(grid, (1.0, 60.0, 1.0), (64, 128), 16)
        vt.frustum = torch.tensor([[[[u, v, p_cam[2]]]]], dtype=torch.float32)  # that one frustum point
        geom = vt.geometry(torch.from_numpy(setup.cam_intrinsics)[None].float(),
                           torch.from_numpy(setup.camera_to_lidar())[None].float(), torch.eye(4)[None])
        x, y = geom.points[0, 0, 0, 0, 0, :2].double().numpy()
        cells.append((int(np.floor(grid.cell_coords(x, y)[0])), int(np.floor(grid.cell_coords(x, y)[1]))))
        expected = invert_transform(key_pose) @ world  # the point in THIS (key) frame's LiDAR frame
        np.testing.assert_allclose([x, y], expected[:2], atol=1e-3)
    assert cells[0] == cells[1]
    # without the alignment (the previous frame lifted into its own LiDAR frame) it would sit metres away
    unaligned = _setup(prev_pose).camera_to_lidar()[0] @ invert_transform(prev_pose @ key.cam_to_ego[0]) @ world
    assert np.linalg.norm(unaligned[:2] - (invert_transform(key_pose) @ world)[:2]) > 3


def test_the_previous_key_frame_of_each_sample_and_across_scene_starts(train_cache, val_cache):
    from cache_schema import CacheReader
    from student.data.dataset import previous_key_frames

    for url in (train_cache, val_cache):  # one scene each, in time order
        reader = CacheReader(url)
        prev = previous_key_frames(reader)
        assert prev.tolist() == [0] + list(range(len(reader) - 1))  # a scene's first frame is its own previous
        tokens = reader.select(["meta"]).column(SampleMeta, "prev_token")
        assert tokens[0] == reader.tokens[0] and tokens[1] == reader.tokens[0]


def test_a_two_key_frame_batch_trains_and_evaluates(train_cache, synthetic_dataroot):
    from student.data.dataset import CacheDataset, collate, open_cache
    from dataset_access.nuscenes.samples import NuScenesSamples
    from student.evaluate import _input_batch
    from student.losses import X3KDLoss, total_loss
    from student.models.student import build_student
    from student.train_config import load_train_config
    from tests.student.run_paths import TINY_YAML

    cfg = load_train_config(TINY_YAML, ["model.key_frames=2"])
    student = cfg.student
    reader = open_cache(train_cache, student, dataroot=synthetic_dataroot)
    data = CacheDataset(reader, synthetic_dataroot, student, cfg.data, seed=0)
    first, second = data[(0, 0)], data[(0, 1)]
    # a scene's first frame is its own previous frame; the next one's previous frame sits behind it
    assert torch.allclose(first["prev_cam2lidar"], first["cam2lidar"], atol=1e-5)
    assert not torch.allclose(second["prev_cam2lidar"], second["cam2lidar"], atol=1e-2)
    batch = collate([first, second])
    model, crit = build_student(student).train(), X3KDLoss(student)
    out = model(batch)
    assert out.bev_view.shape[1] == 2 * student.depth_net.context_channels
    total_loss(crit(out, batch)).backward()
    # the previous frame runs without gradient: only this frame's pixels reach the image backbone
    assert model.image_backbone.stem[0].weight.grad is not None
    dataset = NuScenesSamples(synthetic_dataroot, "v1.0-mini", "mini_train", num_sweeps=0)
    batch = _input_batch(cfg, dataset, dataset.sample(reader.tokens[1]), "cpu")
    assert batch.prev_images.shape == batch.images.shape
    assert len(model.eval().predict(batch)) == 1


def test_two_key_frames_with_cbgs_train_and_resume_exactly(train_cache, synthetic_dataroot, tmp_path):
    import shutil

    from student.run_dir import load_checkpoint

    from student.train_config import load_train_config

    from student.train import train
    from tests.student.run_paths import TINY_YAML

    before = torch.are_deterministic_algorithms_enabled()
    try:
        cfg = load_train_config(TINY_YAML, ["model.key_frames=2", "data.cbgs=true", "loss.xis.enabled=false",
                                            "train.deterministic=true", "train.steps=2", "train.checkpoint_every=1"])
        run = tmp_path / "run"
        train(train_cache, synthetic_dataroot, cfg, run, progress=False)
        resumed = tmp_path / "resumed"
        (resumed / "checkpoints").mkdir(parents=True)
        shutil.copy(run / "checkpoints" / "step_0000001.pt", resumed / "checkpoints")
        train(train_cache, synthetic_dataroot, cfg, resumed, resume=True, progress=False)
    finally:
        torch.use_deterministic_algorithms(before)
    full, again = (load_checkpoint(r / "checkpoints" / "step_0000002.pt") for r in (run, resumed))
    for k, v in full["model"].items():
        assert torch.equal(v, again["model"][k]), k
