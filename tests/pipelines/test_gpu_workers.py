"""GPU exports without a GPU: what each worker process is given (its CUDA_VISIBLE_DEVICES, its `GPU`
resource) for a list of GPU ids, where CUDA tasks land, the batch jobs' GPU requests and worker
command, and that no worker holds the dataset's tables."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster, Scheduler, SpecCluster, Worker, get_worker

from cache_schema.errors import UserInputError
from pipelines.cluster import GPU_RESOURCE, ClusterSpec, gpu_local_cluster
from pipelines.export import export_on_cluster, gpu_task_resources
from pipelines.gpu_worker import worker_commands
from tests.pipelines.exporters import options

REPO = Path(__file__).resolve().parents[2]


def _pinned_gpu() -> str | None:
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_gpu_options_parse_into_one_worker_per_gpu():
    spec = ClusterSpec.parse("local", device="cuda", gpus="3,5")
    assert (spec.workers, spec.gpus, spec.gpu_of_worker()) == (2, ("3", "5"), ["3", "5"])
    shared = ClusterSpec.parse("local", device="cuda", gpus="3,5", workers_per_gpu=2)
    assert shared.gpu_of_worker() == ["3", "5", "3", "5"]
    assert ClusterSpec.parse("local", device="cpu") == ClusterSpec("local")  # CPU clusters unchanged
    job = ClusterSpec.parse("slurm", device="cuda", gpus_per_job=4, cores=16)
    assert (job.gpus_per_job, job.workers_per_gpu) == (4, 1)
    assert ClusterSpec.parse("slurm", device="cuda").gpus_per_job == 1
    assert ClusterSpec.parse("slurm", cores=16).gpus_per_job is None


def test_visible_gpus_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1a2b,GPU-3c4d")
    assert ClusterSpec.parse("local", device="cuda").gpus == ("GPU-1a2b", "GPU-3c4d")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(UserInputError, match="no GPU visible"):
        ClusterSpec.parse("local", device="cuda")


@pytest.mark.parametrize("args, kwargs, words", [
    (("local",), {"gpus": "0,1"}, "only with --device cuda"),
    (("local",), {"device": "cuda:1", "gpus": "1"}, "its own GPU"),
    (("local",), {"device": "cuda", "gpus": "0,0"}, "named twice"),
    (("local",), {"device": "cuda", "gpus": " , "}, "expected GPU ids"),
    (("local",), {"device": "cuda", "gpus_per_job": 2}, "--gpus-per-job: only with --cluster slurm"),
    (("slurm",), {"device": "cuda", "gpus": "0"}, "--gpus: only with --cluster local"),
    (("slurm",), {"device": "cuda", "gpus_per_job": 4, "cores": 2}, "need a core each"),
    (("slurm",), {"device": "cuda", "workers_per_gpu": 0}, "--workers-per-gpu"),
])
def test_gpu_option_errors(args, kwargs, words):
    with pytest.raises(UserInputError, match=words):
        ClusterSpec.parse(*args, **kwargs)


def test_each_local_gpu_worker_is_pinned_to_its_gpu_and_offers_it():
    with gpu_local_cluster(["3", "5", "3"], dashboard_address=":0") as cluster, Client(cluster) as client:
        client.wait_for_workers(3)
        pinned = client.run(_pinned_gpu)
        assert sorted(pinned.values()) == ["3", "3", "5"]
        info = client.scheduler_info(n_workers=-1)["workers"]
        assert all(w["resources"] == {GPU_RESOURCE: 1} and w["nthreads"] == 1 for w in info.values())


def test_cuda_tasks_land_only_on_gpu_workers():
    workers = {"cpu": {"cls": Worker, "options": {"nthreads": 1}},
               "gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {GPU_RESOURCE: 1}}}}
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        cuda = [client.submit(_worker_name, i, resources=gpu_task_resources("cuda"), pure=False) for i in range(6)]
        assert set(client.gather(cuda)) == {"gpu"}
        anywhere = [client.submit(_worker_name, i, resources=gpu_task_resources("cpu"), pure=False)
                    for i in range(20)]
        assert len(client.gather(anywhere)) == 20  # CPU tasks ask for nothing


def _worker_name(_: int) -> str:
    return get_worker().name


def test_a_cuda_export_refuses_a_cluster_without_gpu_workers(client, dataroot, tmp_path):
    # the options name a device the client lacks: only the workers need it
    with pytest.raises(UserInputError, match=f"offers a {GPU_RESOURCE} resource"):
        export_on_cluster(options(dataroot, tmp_path / "store.zarr", device="cuda"), client, progress=False)


def test_no_worker_holds_the_dataset_tables(client, dataroot, tmp_path):
    export_on_cluster(options(dataroot, tmp_path / "store.zarr"), client, progress=False)

    def tables_in_memory() -> int:
        import gc

        from nuscenes.nuscenes import NuScenes

        return sum(isinstance(o, NuScenes) for o in gc.get_objects())

    assert set(client.run(tables_in_memory).values()) == {0}


def test_batch_job_worker_command_pins_one_worker_per_gpu():
    commands = worker_commands("tcp://head:8786", "job", 4, 2, ("0", "1"), ["--nthreads", "1"])
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in commands] == ["0", "1", "0", "1"]
    command = commands[3][0]
    assert command[command.index("--name") + 1] == "job-3"  # as dask-jobqueue names a job's workers
    assert f"{GPU_RESOURCE}=1" in command and command[-2:] == ["--nthreads", "1"]
    with pytest.raises(SystemExit, match="sees no GPU"):
        worker_commands("tcp://head:8786", "job", 1, 1, (), [])


def test_batch_job_workers_join_pinned_and_offering_their_gpu(tmp_path):
    with LocalCluster(n_workers=0, dashboard_address=":0") as cluster, Client(cluster) as client:
        # PYTHONPATH: the workers run this module's functions (client.run)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "3,5", "PYTHONPATH": str(REPO)}
        job = subprocess.Popen([sys.executable, "-m", "pipelines.gpu_worker", cluster.scheduler_address,
                                "--name", "job7", "--nworkers", "2", "--nthreads", "1", "--memory-limit", "2GB"],
                               env=env, cwd=tmp_path, start_new_session=True)
        try:
            client.wait_for_workers(2, timeout=120)
            by_name = {w["name"]: w for w in client.scheduler_info(n_workers=-1)["workers"].values()}
            assert sorted(by_name) == ["job7-0", "job7-1"]
            assert all(w["resources"] == {GPU_RESOURCE: 1} for w in by_name.values())
            pinned = client.run(_pinned_gpu)
            names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
            assert {names[a]: gpu for a, gpu in pinned.items()} == {"job7-0": "3", "job7-1": "5"}
        finally:
            os.killpg(job.pid, signal.SIGTERM)
            deadline = time.time() + 60
            while job.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
