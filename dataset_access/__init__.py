"""x3kd dataset_access: reading datasets, below both stages (numpy and each dataset's own devkit; no torch).

- `nuscenes.tables`: open a dataroot through nuscenes-devkit, its splits, poses;
- `nuscenes.samples.NuScenesSamples`: a split's key frames as `SampleInfo`s (calibration as the cache's
  `Calib` view, LiDAR points and sweeps, radar, GT boxes filtered for training or evaluation);
- `nuscenes.radar`: multi-sweep radar points in a sample's LiDAR frame;
- `nuscenes.results` / `nuscenes.metrics`: the one detection-results JSON writer and DetectionEval scoring;
- `synthetic`: the nuScenes-format synthetic datasets the tests, the demo and the lab run on;
- `images.read_rgb`: the one camera-image reader.
"""
