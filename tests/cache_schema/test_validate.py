import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from cache_schema import CacheReader, CacheWriter, UserInputError, validate
from teacher_export.cli import main as cli
from cache_schema.views import CacheSample
from tests.cache_schema.samples import make_sample, tiny_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path):
    url = str(tmp_path / "store")
    config = tiny_config()
    with CacheWriter(url, config, {"lidar_teacher": {"name": "centerpoint-pillar02", "checkpoint_sha256": "ab12"}}) as w:
        for i in range(config.num_samples):
            w.write_sample(i, CacheSample.from_arrays(make_sample(config, i)))
    return url


def shard_file(url, key, shard):
    array = zarr.open_group(url, mode="r")[key]
    return Path(url) / key / "c" / str(shard) / "/".join(["0"] * (array.ndim - 1))


def test_clean_store(store):
    report = validate(store)
    assert report.ok and report.num_done == 10
    assert "clean" in report.summary()


def test_flipped_bytes_name_exactly_that_sample(store):
    path = shard_file(store, "lidar_teacher/bev_features", 1)  # samples 4..7
    data = bytearray(path.read_bytes())
    # the shard index (at the end) gives each inner chunk's byte range; corrupt the third (sample 6)
    index = np.frombuffer(bytes(data[-4 * 16 - 4:-4]), dtype="<u8").reshape(4, 2)
    offset, nbytes = index[2]
    data[int(offset + nbytes // 2)] ^= 0xFF
    path.write_bytes(bytes(data))
    report = validate(store)
    assert not report.ok
    assert [(p.index, p.token, p.array) for p in report.corrupt] == [(6, "token-0006", "lidar_teacher/bev_features")]
    assert not report.missing and not report.incomplete


def test_deleted_shard_reports_missing_samples(store):
    shard_file(store, "depth/depth", 2).unlink()  # samples 8, 9
    report = validate(store)
    assert sorted((p.index, p.token) for p in report.missing) == [(8, "token-0008"), (9, "token-0009")]


def test_incomplete_samples_are_named(tmp_path):
    url = str(tmp_path / "s")
    config = tiny_config()
    with CacheWriter(url, config) as w:
        for i in (0, 1, 2, 3, 5):
            w.write_sample(i, CacheSample.from_arrays(make_sample(config, i)))
    report = validate(url)
    assert [i for i, _ in report.incomplete] == [4, 6, 7, 8, 9]
    assert report.incomplete[0][1] == "#4"  # never written: no token to name, the index stands in


def test_unknown_major_schema_version_is_refused(store):
    root = zarr.open_group(store, mode="r+")
    attrs = root.attrs["x3kd"]
    root.attrs["x3kd"] = {**attrs, "schema_version": "2.0"}
    with pytest.raises(UserInputError, match=r"schema version 2\.0 is not readable"):
        CacheReader(store)
    with pytest.raises(UserInputError, match="schema version"):
        validate(store)
    result = subprocess.run([sys.executable, "-m", "teacher_export.cli", "validate", store], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "schema version 2.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_newer_minor_version_is_read(store):
    root = zarr.open_group(store, mode="r+")
    root.attrs["x3kd"] = {**root.attrs["x3kd"], "schema_version": "1.7"}
    assert len(CacheReader(store)) == 10


def test_cli_validate_exit_codes_and_inspect(store, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli, ["validate", "--quiet", store])
    assert ok.exit_code == 0 and "clean" in ok.output
    shard_file(store, "gt/boxes", 0).unlink()
    bad = runner.invoke(cli, ["validate", store])
    assert bad.exit_code == 1 and "token-0000" in bad.output
    missing = runner.invoke(cli, ["validate", str(tmp_path / "nothing")])
    assert missing.exit_code == 2
    info = runner.invoke(cli, ["inspect", store])
    assert info.exit_code == 0
    assert "10/10 done" in info.output and "centerpoint-pillar02" in info.output and "lidar_teacher" in info.output
    assert runner.invoke(cli, ["inspect", "--help"]).exit_code == 0


def test_a_corrupt_shard_index_is_a_one_line_error_naming_the_sample(store):
    path = shard_file(store, "lidar_teacher/bev_features", 1)  # samples 4..7
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # inside the shard index, which is checksummed on its own
    path.write_bytes(bytes(data))
    with pytest.raises(UserInputError, match=r"sample 5 \(token-0005\) is corrupt .*shard index") as e:
        CacheReader(store)[5]
    assert "\n" not in str(e.value)
    assert not validate(store).ok
