"""The export on a LocalCluster of two worker processes: same store as the single-process export,
teachers built once per worker, failed tasks retried, a killed worker survived, a failed run resumed."""
import os
import signal
import threading
import time
from functools import partial

import numpy as np
import pytest
import torch
import zarr

from cache_schema import CacheReader, validate
from cache_schema.errors import UserInputError
from pipelines.export import export_on_cluster
from teacher_export.export import export
from tests.cache_schema.test_resume import raw_arrays
from tests.pipelines.exporters import NUM_SAMPLES, CountingExporter, FlakyExporter, SlowExporter, options

@pytest.fixture(scope="module")
def reference(dataroot, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "store.zarr"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the Dask workers (and faster on a busy 2-core machine)
    try:
        result = export(options(dataroot, out), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert result.num_samples == NUM_SAMPLES
    return raw_arrays(str(out))


def assert_equals_reference(out, reference, storage_options=None):
    raw = raw_arrays(str(out)) if storage_options is None else raw_arrays_of_url(str(out), storage_options)
    assert raw.keys() == reference.keys()
    for key in raw:
        np.testing.assert_array_equal(raw[key], reference[key], err_msg=key)


def test_two_workers_equal_single_process_and_build_teachers_once(client, dataroot, reference, tmp_path):
    out, builds = tmp_path / "store.zarr", tmp_path / "builds.log"
    result = export_on_cluster(options(dataroot, out), client, progress=False,
                               exporter_factory=partial(CountingExporter, build_log=str(builds)))
    assert (result.written, result.skipped, result.num_samples) == (NUM_SAMPLES, 0, NUM_SAMPLES)
    assert_equals_reference(out, reference)
    assert validate(str(out)).ok
    # one Exporter per worker process for the store description and all four shard tasks
    pids = builds.read_text().split()
    assert len(pids) == len(set(pids)) <= 2
    assert str(os.getpid()) not in pids  # the client never builds teachers
    runs = CacheReader(str(out)).meta.runs
    assert len(runs) == 1 and runs[0]["written"] == NUM_SAMPLES and runs[0]["shards"] == 4

    again = export_on_cluster(options(dataroot, out), client, progress=False)
    assert (again.written, again.skipped) == (0, NUM_SAMPLES)
    assert len(CacheReader(str(out)).meta.runs) == 1  # nothing to do, nothing recorded


def test_failed_task_is_retried_and_its_shard_completed(client, dataroot, reference, tmp_path):
    out, marker = tmp_path / "store.zarr", tmp_path / "failed-once"
    # sample 3 is the second of shard 1: the failing attempt has already handed sample 2 to the writer
    flaky = partial(FlakyExporter, marker=str(marker), fail_at=3)
    result = export_on_cluster(options(dataroot, out), client, progress=False, retries=1, exporter_factory=flaky)
    assert marker.exists()  # the failure did happen
    assert result.written == NUM_SAMPLES
    assert validate(str(out)).ok
    assert_equals_reference(out, reference)


def test_run_that_fails_for_good_is_resumed_by_the_same_call(client, dataroot, reference, tmp_path):
    out, marker = tmp_path / "store.zarr", tmp_path / "failed-once"
    flaky = partial(FlakyExporter, marker=str(marker), fail_at=3)
    with pytest.raises(RuntimeError, match="injected failure at sample 3"):
        export_on_cluster(options(dataroot, out), client, progress=False, retries=0, exporter_factory=flaky)
    report = validate(str(out))
    assert not report.missing and not report.corrupt  # what is marked done is whole
    assert CacheReader(str(out)).done_mask[2]  # the failed task's finished sample was kept

    resumed = export_on_cluster(options(dataroot, out), client, progress=False)
    assert resumed.skipped >= 1 and resumed.written + resumed.skipped == NUM_SAMPLES
    assert validate(str(out)).ok
    assert_equals_reference(out, reference)


def test_user_error_on_a_worker_reaches_the_client_as_such(client, dataroot, tmp_path):
    out = tmp_path / "store.zarr"
    with pytest.raises(UserInputError, match="--max-gt-boxes"):  # synthetic scenes have more than 1 box
        export_on_cluster(options(dataroot, out, max_gt_boxes=1), client, progress=False, retries=0)
    assert not CacheReader(str(out)).done_mask.any()


def test_worker_killed_mid_task_loses_nothing(client, dataroot, reference, tmp_path):
    out, task_log = tmp_path / "store.zarr", tmp_path / "tasks.log"
    task_log.touch()
    slow = partial(SlowExporter, task_log=str(task_log), delay=1.0)
    outcome = {}

    def run():
        try:
            outcome["result"] = export_on_cluster(options(dataroot, out), client, progress=False, exporter_factory=slow)
        except BaseException as e:  # handed to the test thread
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while not task_log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    victim, first_index = task_log.read_text().split("\n")[0].split()
    assert int(victim) in client.run(os.getpid).values()
    os.kill(int(victim), signal.SIGKILL)  # a task of 2 samples at 1 s each has just started there
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].written == NUM_SAMPLES
    # the killed task's shard was computed again by a live worker
    starts = [line.split() for line in task_log.read_text().splitlines()]
    assert any(index == first_index and pid != victim for pid, index in starts)
    assert validate(str(out)).ok
    assert_equals_reference(out, reference)


@pytest.fixture(scope="module")
def s3_options(s3_server):
    return s3_server("x3kd-pipelines")


def raw_arrays_of_url(url, storage_options):
    root = zarr.open_group(url, mode="r", storage_options=storage_options)
    return {f"{g}/{name}": array[:] for g, group in root.groups() for name, array in group.arrays()}


def test_workers_write_one_s3_store(client, dataroot, reference, s3_options):
    url = "s3://x3kd-pipelines/caches/train.zarr"
    result = export_on_cluster(options(dataroot, url, storage_options=s3_options), client, progress=False)
    assert result.written == NUM_SAMPLES and result.out == url
    assert validate(url, storage_options=s3_options).ok
    assert_equals_reference(url, reference, storage_options=s3_options)
