"""`x3kd-cache export --cluster local:2` end to end, with both teachers, against the single-process export."""
from dataclasses import asdict

import numpy as np
import torch
import yaml
from click.testing import CliRunner

from cache_schema import CacheReader, validate
from pipelines.cli import main
from teacher_export.export import export
from tests.cache_schema.test_resume import raw_arrays
from tests.teacher_export.exports import small_export_options


def test_cli_local_cluster_export_equals_single_process(synthetic_dataroot, tmp_path):
    reference = tmp_path / "reference.zarr"
    # Dask workers run torch with one thread; Mask R-CNN's float sums differ in the last bits with
    # another thread count, so the reference uses one too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        export(small_export_options(synthetic_dataroot, reference), progress=False)
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "cluster.zarr"
    config = tmp_path / "export.yaml"
    config.write_text(yaml.safe_dump(asdict(small_export_options(synthetic_dataroot, out))))

    result = CliRunner().invoke(main, ["export", "--config", str(config), "--cluster", "local:2", "--retries", "1"])
    assert result.exit_code == 0, result.output
    assert "Dask dashboard: http" in result.output
    assert "3 samples written, 0 already done" in result.output
    assert validate(str(out)).ok
    raw, ref = raw_arrays(str(out)), raw_arrays(str(reference))
    assert raw.keys() == ref.keys() and "image_teacher/masks" in raw
    for key in raw:
        np.testing.assert_array_equal(raw[key], ref[key], err_msg=key)
    (run,) = CacheReader(str(out)).meta.runs
    assert run["cluster"] == "local:2" and run["retries"] == 1


def test_cli_cluster_option_errors_are_one_line_exit_2(synthetic_dataroot, tmp_path):
    base = ["export", "--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini", "--split", "mini_train",
            "--out", str(tmp_path / "x.zarr")]
    for extra, words in ((["--cluster", "local", "--scheduler", "tcp://localhost:8786"], "one of them"),
                         (["--cluster", "local:2", "--jobs", "3"], "--jobs"),
                         (["--cluster", "yarn"], "expected local"),
                         (["--cluster", "local", "--gpus", "0,1"], "only with --device cuda"),
                         (["--cluster", "slurm", "--device", "cuda:1"], "its own GPU")):
        result = CliRunner().invoke(main, base + extra)
        assert result.exit_code == 2, result.output
        assert words in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.zarr").exists()
