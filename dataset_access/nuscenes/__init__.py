"""nuScenes through nuscenes-devkit: tables and splits, key-frame samples, radar, results and scoring."""
