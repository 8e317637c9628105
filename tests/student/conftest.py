"""Student test setup: one torch thread per test (the CI machine has 2 shared cores)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


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
