"""Session-wide fixtures shared by every test package."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_dataroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic nuScenes-format dataroot (v1.0-mini; scene-0061 in mini_train, scene-0103 in
    mini_val; 3 key frames each, 2 sweeps per key frame, 160x90 images), generated once per session."""
    from dataset_access.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("synthetic") / "nuscenes", seed=0)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API (moto's server) on loopback, reachable from other processes too. Yields
    `make_bucket(name) -> storage_options` for s3fs/zarr."""
    import socket

    server_mod = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}

    def make_bucket(name: str) -> dict:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_DEFAULT_REGION", "us-east-1")  # moto refuses other regions' location constraint
            s3fs.S3FileSystem(**options, skip_instance_cache=True).mkdir(name)
        return dict(options)

    yield make_bucket
    server.stop()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Heavy CPU models in a test module run single-threaded: faster on the shared 2-core machines."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def train_cache(synthetic_dataroot, tmp_path_factory) -> str:
    """A cache of the synthetic mini_train split (3 samples) made by both (randomly initialised, seeded)
    teachers on the 64x64 grid that configs/tiny.yaml uses."""
    from teacher_export.export import export
    from tests.teacher_export.exports import small_export_options

    out = tmp_path_factory.mktemp("train_cache") / "cache.zarr"
    export(small_export_options(synthetic_dataroot, out), progress=False)
    return str(out)


@pytest.fixture(scope="session")
def val_cache(synthetic_dataroot, tmp_path_factory) -> str:
    """The same export of the mini_val split: another cache for the same student."""
    from teacher_export.export import export
    from tests.teacher_export.exports import small_export_options

    out = tmp_path_factory.mktemp("val_cache") / "cache.zarr"
    export(small_export_options(synthetic_dataroot, out, split="mini_val"), progress=False)
    return str(out)
