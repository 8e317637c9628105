"""The store is plain Zarr v3: other readers open it, and it lives on S3 as well as on disk."""
import numpy as np
import pytest
import zarr

from cache_schema import CacheReader, CacheWriter, validate
from cache_schema.views import CacheSample
from tests.cache_schema.samples import make_sample, tiny_config


def write(url, config, storage_options=None):
    with CacheWriter(url, config, {"lidar": "test"}, storage_options=storage_options) as w:
        for i in range(config.num_samples):
            w.write_sample(i, CacheSample.from_arrays(make_sample(config, i)))


def test_tensorstore_reads_every_array_identically(tmp_path):
    ts = pytest.importorskip("tensorstore")
    url = str(tmp_path / "store")
    config = tiny_config()
    write(url, config)
    root = zarr.open_group(url, mode="r")
    checked = 0
    for group_name, group in root.groups():
        for name, array in group.arrays():
            opened = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{url}/{group_name}/{name}"}},
                             read=True).result()
            assert tuple(opened.shape) == array.shape
            np.testing.assert_array_equal(opened.read().result(), array[:], err_msg=f"{group_name}/{name}")
            checked += 1
    assert checked == 27  # 25 layout arrays + the int8 affine + done flags


def test_xarray_opens_every_group_with_named_dimensions(tmp_path):
    xr = pytest.importorskip("xarray")
    url = str(tmp_path / "store")
    config = tiny_config()
    write(url, config)
    reader = CacheReader(url)
    seen = 0
    for group in config.groups:
        ds = xr.open_zarr(url, group=group, zarr_format=3, consolidated=False)
        for name, var in ds.data_vars.items():
            assert var.dims[0] == "sample" and var.sizes["sample"] == config.num_samples, (group, name)
            seen += 1
    assert seen == 27  # 25 layout arrays, the int8 affine and the done flags, none taken for a coordinate
    features = xr.open_zarr(url, group="lidar_teacher", zarr_format=3, consolidated=False)["bev_features"]
    assert features.dims == ("sample", "feature", "y", "x")
    heat = xr.open_zarr(url, group="lidar_teacher", zarr_format=3, consolidated=False)["heatmaps"]
    np.testing.assert_allclose(heat.isel(sample=3).values.astype(np.float32), reader[3].lidar_teacher.heatmaps)


def test_s3_store_round_trip_and_validate(s3_server):
    s3fs = pytest.importorskip("s3fs")
    options = s3_server("x3kd-bucket")
    fs = s3fs.S3FileSystem(**options)
    url = "s3://x3kd-bucket/caches/tiny.zarr"
    config = tiny_config()
    write(url, config, storage_options=options)
    assert fs.exists("x3kd-bucket/caches/tiny.zarr/lidar_teacher/heatmaps/c/1/0/0/0")
    reader = CacheReader(url, storage_options=options)
    sample = reader.by_token("token-0005")
    expected = make_sample(config, 5)
    np.testing.assert_allclose(sample.gt.boxes, expected["gt/boxes"])
    assert validate(url, storage_options=options).ok
