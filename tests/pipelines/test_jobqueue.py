"""The SLURM and PBS backends' generated job scripts (no batch system here: nothing is submitted)."""
import sys

import pytest

from pipelines.cluster import ClusterSpec, jobqueue_cluster

pytest.importorskip("dask_jobqueue")


def job_script(kind: str) -> str:
    spec = ClusterSpec.parse(kind, jobs=2, cores=4, memory="16GB", walltime="01:30:00", queue="gpu")
    with jobqueue_cluster(spec, dashboard_address=":0") as cluster:
        return cluster.job_script()


def worker_command(script: str) -> str:
    (line,) = [line for line in script.splitlines() if "distributed.cli.dask_worker" in line]
    return line


def test_slurm_job_script():
    script = job_script("slurm")
    for directive in ("#SBATCH -J x3kd-export", "#SBATCH -p gpu", "#SBATCH --cpus-per-task=4",
                      "#SBATCH -t 01:30:00", "#SBATCH --mem="):
        assert directive in script
    command = worker_command(script)
    # one single-threaded worker process per core, run by this interpreter, joining our scheduler
    assert command.startswith(sys.executable)
    assert "--nthreads 1" in command and "--nworkers 4" in command
    assert " tcp://" in command


def test_pbs_job_script():
    script = job_script("pbs")
    for directive in ("#PBS -N x3kd-export", "#PBS -q gpu", "#PBS -l walltime=01:30:00", "ncpus=4"):
        assert directive in script
    command = worker_command(script)
    assert "--nthreads 1" in command and "--nworkers 4" in command


@pytest.mark.parametrize("kind, request_line", [("slurm", "#SBATCH --gres=gpu:2"), ("pbs", "ngpus=2")])
def test_gpu_jobs_request_their_gpus_and_pin_a_worker_to_each(kind, request_line):
    spec = ClusterSpec.parse(kind, jobs=2, cores=8, memory="64GB", device="cuda", gpus_per_job=2,
                             workers_per_gpu=2)
    with jobqueue_cluster(spec, dashboard_address=":0") as cluster:
        script = cluster.job_script()
    assert request_line in script
    (command,) = [line for line in script.splitlines() if "-m pipelines.gpu_worker" in line]
    assert command.startswith(sys.executable)
    # four single-threaded workers per job (2 GPUs x 2), each with a quarter of the job's memory
    assert "--nworkers 4" in command and "--workers-per-gpu 2" in command and "--nthreads 2" in command
    assert " tcp://" in command and "--memory-limit 14.90GiB" in command  # 64 GB / 4
