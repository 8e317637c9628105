"""The store is plain Zarr v3: other readers open it, and it lives on S3 as well as on disk."""
import socket

import numpy as np
import pytest
import zarr

from cache_schema import CacheReader, CacheWriter, validate
from tests.cache_schema.samples import make_sample, tiny_config


def write(url, config, storage_options=None):
    with CacheWriter(url, config, {"lidar": "test"}, storage_options=storage_options) as w:
        for i in range(config.num_samples):
            w.write_sample(i, make_sample(config, i))


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
    assert checked == 22  # 20 layout arrays + the int8 affine + done flags


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3 API (moto's server) on loopback."""
    server_mod = pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_s3_store_round_trip_and_validate(s3_endpoint, monkeypatch):
    s3fs = pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("x3kd-bucket")
    url = "s3://x3kd-bucket/caches/tiny.zarr"
    config = tiny_config()
    write(url, config, storage_options=options)
    assert fs.exists("x3kd-bucket/caches/tiny.zarr/lidar_teacher/heatmaps/c/1/0/0/0")
    reader = CacheReader(url, storage_options=options)
    sample = reader.by_token("token-0005")
    expected = make_sample(config, 5)
    np.testing.assert_allclose(sample["gt/boxes"], expected["gt/boxes"])
    assert validate(url, storage_options=options).ok
