import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from cache_schema import CacheReader, CacheWriter, validate
from cache_schema.layout import arrays_for
from cache_schema.views import CacheSample
from tests.cache_schema.samples import make_sample, tiny_config

REPO = Path(__file__).resolve().parents[2]


def run_writer(url, first, last, kill_after=None, num_samples=10):
    cmd = [sys.executable, "-m", "tests.cache_schema.writer_child", url, str(first), str(last),
           "--num-samples", str(num_samples)]
    if kill_after is not None:
        cmd += ["--kill-after-writes", str(kill_after)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def raw_arrays(url):
    """Every array exactly as stored on disk (quantized values, flags)."""
    root = zarr.open_group(url, mode="r")
    out = {}
    for group_name, group in root.groups():
        for name, array in group.arrays():
            out[f"{group_name}/{name}"] = array[:]
    return out


def assert_same_store(a, b):
    raw_a, raw_b = raw_arrays(a), raw_arrays(b)
    assert raw_a.keys() == raw_b.keys()
    for key in raw_a:
        np.testing.assert_array_equal(raw_a[key], raw_b[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("ref") / "store")
    assert run_writer(url, 0, 10).returncode == 0
    return url


# Array writes per full shard: 20 data/affine arrays + 1 done flag write. Kill points: inside the first
# shard, inside the second shard's data writes, and right before the second shard's done flags.
WRITES_PER_SHARD = len(arrays_for(tiny_config())) + 1 + 1


@pytest.mark.parametrize("kill_after", [3, WRITES_PER_SHARD + 7, 2 * WRITES_PER_SHARD - 1])
def test_sigkill_mid_shard_then_resume_equals_uninterrupted(tmp_path, reference, kill_after):
    url = str(tmp_path / "store")
    killed = run_writer(url, 0, 10, kill_after=kill_after)
    assert killed.returncode == -signal.SIGKILL
    done = CacheReader(url).done_mask
    report = validate(url)
    # nothing marked done is incomplete or corrupt; the killed shard's samples are simply not done
    assert not report.missing and not report.corrupt and not report.store_problems
    shards_done = kill_after // WRITES_PER_SHARD
    assert done.sum() == 4 * shards_done
    finished = run_writer(url, 0, 10)
    assert finished.returncode == 0, finished.stderr
    assert validate(url).ok
    assert_same_store(url, reference)


def test_rerun_over_complete_store_writes_nothing(tmp_path, reference):
    url = str(tmp_path / "store")
    assert run_writer(url, 0, 10).returncode == 0
    files = {p: p.stat().st_mtime_ns for p in Path(url).rglob("*") if p.is_file()}
    assert run_writer(url, 0, 10).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in Path(url).rglob("*") if p.is_file()} == files


def test_partial_shard_is_completed_later_without_losing_done_samples(tmp_path, reference):
    url = str(tmp_path / "store")
    config = tiny_config()
    with CacheWriter(url, config, {"lidar": "test"}) as writer:  # --limit-like run: shard 1 half filled
        for i in range(6):
            writer.write_sample(i, CacheSample.from_arrays(make_sample(config, i)))
    assert CacheReader(url).done_mask.tolist() == [True] * 6 + [False] * 4
    report = validate(url)
    assert not report.ok and [i for i, _ in report.incomplete] == [6, 7, 8, 9]
    with CacheWriter(url, config, {"lidar": "test"}) as writer:
        for i in range(10):
            writer.write_sample(i, CacheSample.from_arrays(make_sample(config, i)))
    assert validate(url).ok
    assert_same_store(url, reference)


def test_two_processes_write_disjoint_shards_concurrently(tmp_path, reference):
    url = str(tmp_path / "store")
    config = tiny_config()
    CacheWriter(url, config, {"lidar": "test"})  # the store is created once, before the writers start
    cmds = [[sys.executable, "-m", "tests.cache_schema.writer_child", url, a, b] for a, b in (("0", "4"), ("4", "10"))]
    procs = [subprocess.Popen(c, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert validate(url).ok
    assert_same_store(url, reference)


def test_writer_restricted_to_rows_reads_and_writes_only_its_shards(tmp_path, reference):
    url = str(tmp_path / "store")
    config = tiny_config()
    CacheWriter(url, config, {"lidar": "test"})
    with CacheWriter(url, config, {"lidar": "test"}, rows=range(4, 8)) as writer:
        for i in range(4, 8):
            writer.write_sample(i, CacheSample.from_arrays(make_sample(config, i)))
        with pytest.raises(IndexError, match="outside"):
            writer.write_sample(0, CacheSample.from_arrays(make_sample(config, 0)))
    assert CacheReader(url).done_mask.tolist() == [False] * 4 + [True] * 4 + [False] * 2
    with CacheWriter(url, config, {"lidar": "test"}, rows=range(8, 10)) as writer:  # the last, partial shard
        assert not writer.is_done(5)  # flags outside its rows are not read
        for i in range(8, 10):
            writer.write_sample(i, CacheSample.from_arrays(make_sample(config, i)))
    with pytest.raises(ValueError, match="whole shards"):
        CacheWriter(url, config, {"lidar": "test"}, rows=range(2, 6))
