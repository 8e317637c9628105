"""x3kd dataset_access: reading datasets, below both stages (numpy and each dataset's own devkit; no torch).

- `samples.SampleInfo`: the one sample type every reader hands out (calibration, GT boxes, sweeps);
- `nuscenes.tables`: open a dataroot through nuscenes-devkit, its splits, poses;
- `nuscenes.samples.NuScenesSamples`: a split's key frames as `SampleInfo`s (calibration as the cache's
  `Calib` view, LiDAR points and sweeps, radar, GT boxes filtered for training or evaluation);
- `nuscenes.radar`: multi-sweep radar points in a sample's LiDAR frame;
- `nuscenes.results` / `nuscenes.metrics`: the one detection-results JSON writer and DetectionEval scoring;
- `waymo`: the Waymo Open Dataset v2 Parquet layout (`schema`), its reader (`reader.WaymoV2`: frames by
  key, range images to points in `range_image`), its frames as `SampleInfo`s (`samples.WaymoSamples`,
  images read by reference from their Parquet file) and Waymo's metrics in numpy (`metrics`: AP/APH,
  LET-3D-AP/APL; `evaluation` scores a split); no TensorFlow;
- `open.open_split`: a split of either dataset by its version (`waymo-v2`, else nuScenes);
- `synthetic`: the synthetic datasets the tests, the demo and the lab run on (nuScenes format, and the
  same worlds as Waymo v2 Parquet: `synthetic.waymo`);
- `images.read_rgb`: the one camera-image reader.
"""
