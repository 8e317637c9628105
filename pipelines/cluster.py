"""Where the Dask workers come from: a LocalCluster, an existing scheduler, or SLURM/PBS jobs.

`ClusterSpec.parse` turns the `x3kd-cache export` options into a spec; `connect(spec)` starts (or
joins) the cluster and yields a `distributed.Client`. Every worker runs one task at a time with one
Dask thread: the teachers are per-process state, and torch parallelises inside a task anyway.

GPUs: with `--device cuda` every worker is pinned to one GPU (its `CUDA_VISIBLE_DEVICES` holds that
GPU alone, so its teachers run on `cuda`) and offers the Dask resource `GPU`, which every export task
of a CUDA export asks for: on a node, one worker per visible GPU (`--gpus` picks them,
`--workers-per-gpu` shares one); in batch jobs, `--gpus-per-job` requests them from the batch system
and `python -m pipelines.gpu_worker` starts the job's workers, one per GPU (as dask-cuda's workers do,
without needing it). CPU exports are unchanged: no resources, one worker per core.

SLURM and PBS go through dask-jobqueue (the optional extra `cluster`); options not given on the
command line come from dask-jobqueue's own configuration (`~/.config/dask/jobqueue.yaml`: account,
interface, job directives, ...), as in any dask-jobqueue deployment.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from cache_schema.errors import UserInputError

log = logging.getLogger(__name__)

JOBQUEUE_KINDS = ("slurm", "pbs")
GPU_RESOURCE = "GPU"  # the Dask resource a GPU worker offers and a CUDA export task asks for


@dataclass(frozen=True)
class ClusterSpec:
    """A cluster to run an export on.

    kind: "local" (a LocalCluster of `workers` processes), "scheduler" (join `address`), or "slurm"
    / "pbs" (`jobs` batch jobs of `cores` cores and `memory` each, every core one single-threaded
    worker process).
    gpus: local, CUDA: the GPU ids the workers are pinned to, one each in turn (`workers` of them,
    default `workers_per_gpu` per GPU). gpus_per_job: slurm/pbs, CUDA: GPUs each job requests, with
    `workers_per_gpu` workers pinned to each."""

    kind: str
    workers: int | None = None
    address: str | None = None
    jobs: int = 1
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    queue: str | None = None
    gpus: tuple[str, ...] = ()
    gpus_per_job: int | None = None
    workers_per_gpu: int = 1

    @classmethod
    def parse(cls, cluster: str | None = None, scheduler: str | None = None, *, jobs: int | None = None,
              cores: int | None = None, memory: str | None = None, walltime: str | None = None,
              queue: str | None = None, device: str | None = None, gpus: str | None = None,
              gpus_per_job: int | None = None, workers_per_gpu: int | None = None) -> "ClusterSpec | None":
        """The spec for `--cluster`/`--scheduler`, the job options and the export's `--device`; None means
        a single-process export."""
        jobqueue = {"--jobs": jobs, "--cores": cores, "--memory": memory, "--walltime": walltime, "--queue": queue}
        given = [name for name, value in jobqueue.items() if value is not None]
        if cluster and scheduler:
            raise UserInputError("--cluster and --scheduler: give one of them")
        kind, _, count = (cluster or "").strip().lower().partition(":")
        if given and kind not in JOBQUEUE_KINDS:
            raise UserInputError(f"{', '.join(given)}: only with --cluster slurm or --cluster pbs")
        cuda = str(device or "cpu").strip().lower().startswith("cuda")
        gpu_options = {"--gpus": gpus, "--gpus-per-job": gpus_per_job, "--workers-per-gpu": workers_per_gpu}
        gpu_given = [name for name, value in gpu_options.items() if value is not None]
        if gpu_given and not cuda:
            raise UserInputError(f"{', '.join(gpu_given)}: only with --device cuda")
        if gpus is not None and kind != "local":
            raise UserInputError("--gpus: only with --cluster local (batch jobs get theirs from --gpus-per-job)")
        if gpus_per_job is not None and kind not in JOBQUEUE_KINDS:
            raise UserInputError("--gpus-per-job: only with --cluster slurm or --cluster pbs")
        if workers_per_gpu is not None and workers_per_gpu < 1:
            raise UserInputError(f"--workers-per-gpu: must be >= 1, got {workers_per_gpu}")
        if (cluster or scheduler) and cuda and ":" in str(device):
            raise UserInputError(f"--device {device}: with --cluster/--scheduler every worker has its own GPU as "
                                 "`cuda`; give --device cuda (and --gpus to choose the GPUs of a node)")
        per_gpu = workers_per_gpu or 1
        if scheduler:
            if "://" not in scheduler:
                raise UserInputError(f"--scheduler {scheduler!r}: expected an address like tcp://HOST:8786")
            return cls("scheduler", address=scheduler)
        if not cluster:
            return None
        if kind == "local":
            try:
                workers = int(count) if count else None
            except ValueError:
                raise UserInputError(f"--cluster {cluster!r}: expected local or local:N (N worker processes)") from None
            if workers is not None and workers < 1:
                raise UserInputError(f"--cluster {cluster!r}: needs at least one worker")
            if not cuda:
                return cls("local", workers=workers)
            ids = parse_gpu_ids(gpus) if gpus is not None else visible_gpus()
            if not ids:
                raise UserInputError("--device cuda: no GPU visible here (CUDA_VISIBLE_DEVICES, or torch sees none); "
                                     "name them with --gpus 0,1,... or export on the CPU")
            return cls("local", workers=workers or len(ids) * per_gpu, gpus=ids, workers_per_gpu=per_gpu)
        if kind in JOBQUEUE_KINDS and not count:
            if jobs is not None and jobs < 1:
                raise UserInputError(f"--jobs: must be >= 1, got {jobs}")
            if cores is not None and cores < 1:
                raise UserInputError(f"--cores: must be >= 1, got {cores}")
            if gpus_per_job is not None and gpus_per_job < 1:
                raise UserInputError(f"--gpus-per-job: must be >= 1, got {gpus_per_job}")
            per_job = (gpus_per_job or 1) if cuda else None
            if per_job and cores is not None and cores < per_job * per_gpu:
                raise UserInputError(f"--cores {cores}: a job's {per_job * per_gpu} GPU workers need a core each")
            return cls(kind, jobs=jobs or 1, cores=cores, memory=memory, walltime=walltime, queue=queue,
                       gpus_per_job=per_job, workers_per_gpu=per_gpu)
        raise UserInputError(f"--cluster {cluster!r}: expected local, local:N, slurm or pbs")

    def gpu_of_worker(self) -> list[str]:
        """local, CUDA: the GPU each worker is pinned to, in turn over `gpus`."""
        return [self.gpus[i % len(self.gpus)] for i in range(self.workers or 0)] if self.gpus else []

    def describe(self) -> str:
        if self.kind == "local":
            local = f"local:{self.workers}" if self.workers else "local"
            return f"{local} on GPUs {','.join(self.gpus)}" if self.gpus else local
        if self.kind == "scheduler":
            return str(self.address)
        gpus = f", {self.gpus_per_job} GPUs each" if self.gpus_per_job else ""
        return f"{self.kind} ({self.jobs} jobs x {self.cores or 'configured'} cores{gpus})"


def parse_gpu_ids(text: str) -> tuple[str, ...]:
    """`--gpus 0,1,3` (indices or GPU UUIDs, as CUDA_VISIBLE_DEVICES takes them)."""
    ids = tuple(part.strip() for part in str(text).split(",") if part.strip())
    if not ids:
        raise UserInputError(f"--gpus {text!r}: expected GPU ids such as 0,1,2,3")
    if len(set(ids)) != len(ids):
        raise UserInputError(f"--gpus {text!r}: a GPU is named twice (use --workers-per-gpu to share one)")
    return ids


def visible_gpus() -> tuple[str, ...]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES's ids when set (a batch job's allocation),
    else every GPU torch sees."""
    import os

    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return tuple(part.strip() for part in listed.split(",") if part.strip() and part.strip() != "-1")
    import torch

    return tuple(str(i) for i in range(torch.cuda.device_count())) if torch.cuda.is_available() else ()


def local_cluster(workers: int | None = None, *, dashboard_address: str | None = ":8787", **kwargs: Any):
    """A LocalCluster of single-threaded worker processes (one per CPU core when `workers` is None)."""
    import os

    from distributed import LocalCluster

    kwargs.setdefault("silence_logs", logging.ERROR)
    return LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                        dashboard_address=dashboard_address, **kwargs)


def gpu_local_cluster(gpu_of_worker: list[str], *, dashboard_address: str | None = ":8787", **kwargs: Any):
    """A cluster of single-threaded worker processes on this node, worker i pinned to GPU
    `gpu_of_worker[i]` (its CUDA_VISIBLE_DEVICES) and offering one `GPU` resource."""
    import psutil
    from distributed import Nanny, Scheduler, SpecCluster

    memory = psutil.virtual_memory().total // max(len(gpu_of_worker), 1)
    workers = {f"gpu{gpu}-{i}": {"cls": Nanny, "options": {
        "nthreads": 1, "memory_limit": memory, "resources": {GPU_RESOURCE: 1},
        "env": {"CUDA_VISIBLE_DEVICES": gpu}}} for i, gpu in enumerate(gpu_of_worker)}
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": dashboard_address}}
    kwargs.setdefault("silence_logs", logging.ERROR)
    return SpecCluster(workers=workers, scheduler=scheduler, **kwargs)


def jobqueue_cluster(spec: ClusterSpec, *, dashboard_address: str | None = ":8787", **kwargs: Any):
    """A dask-jobqueue SLURMCluster or PBSCluster for `spec` (no jobs submitted yet)."""
    try:
        import dask_jobqueue
    except ImportError:
        raise UserInputError(f"--cluster {spec.kind}: needs dask-jobqueue (pip install 'x3kd[cluster]')") from None
    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[spec.kind]
    job = {"cores": spec.cores, "memory": spec.memory, "walltime": spec.walltime, "queue": spec.queue,
           # one single-threaded worker process per core, as with --cluster local:N
           "processes": spec.cores, "job_name": "x3kd-export"}
    if spec.gpus_per_job:
        job.update(_gpu_job_options(spec, spec.kind))
    job = {k: v for k, v in job.items() if v is not None}
    scheduler_options = {"dashboard_address": dashboard_address, **kwargs.pop("scheduler_options", {})}
    try:
        return cls(scheduler_options=scheduler_options, **job, **kwargs)
    except ValueError as e:  # dask-jobqueue's own checks, e.g. cores/memory neither given nor configured
        raise UserInputError(f"--cluster {spec.kind}: {' '.join(str(e).split())}") from None


def _gpu_job_options(spec: ClusterSpec, config_name: str) -> dict[str, Any]:
    """dask-jobqueue options for jobs of `spec.gpus_per_job` GPUs: the batch system's GPU request and
    `pipelines.gpu_worker` as the job's worker command, which pins `workers_per_gpu` workers to each."""
    import dask

    workers = spec.gpus_per_job * spec.workers_per_gpu
    options: dict[str, Any] = {
        "processes": workers, "worker_command": "pipelines.gpu_worker",
        "worker_extra_args": [*(dask.config.get(f"jobqueue.{config_name}.worker-extra-args") or []),
                              "--nworkers", str(workers), "--workers-per-gpu", str(spec.workers_per_gpu)]}
    if config_name == "slurm":
        options["job_extra_directives"] = [*(dask.config.get("jobqueue.slurm.job-extra-directives") or []),
                                           f"--gres=gpu:{spec.gpus_per_job}"]
    elif dask.config.get("jobqueue.pbs.resource-spec"):
        log.warning("jobqueue.pbs.resource-spec is configured; it must request the %d GPUs per job itself",
                    spec.gpus_per_job)
    else:  # PBS Pro's chunk syntax: the CPUs, memory and GPUs of one node
        from dask.utils import parse_bytes
        from dask_jobqueue.pbs import pbs_format_bytes_ceil

        cores = spec.cores or dask.config.get("jobqueue.pbs.cores")
        memory = spec.memory or dask.config.get("jobqueue.pbs.memory")
        chunk = f"select=1:ncpus={cores}:ngpus={spec.gpus_per_job}"
        options["resource_spec"] = chunk + (f":mem={pbs_format_bytes_ceil(parse_bytes(memory))}" if memory else "")
    return options


@contextmanager
def connect(spec: ClusterSpec, *, dashboard_address: str | None = ":8787") -> Iterator[Any]:
    """Start or join the cluster of `spec` and yield a connected `distributed.Client`.

    A cluster started here (local, slurm, pbs) is shut down on exit; a joined one is left running."""
    from distributed import Client

    # distributed logs at INFO by its own configuration; follow the application's verbosity instead
    logging.getLogger("distributed").setLevel(logging.getLogger().getEffectiveLevel())
    if spec.kind == "scheduler":
        try:
            client = Client(spec.address, timeout="30s")
        except (OSError, TimeoutError) as e:
            raise UserInputError(f"--scheduler {spec.address}: cannot connect ({e})") from None
        with client:
            yield client
        return
    if spec.kind == "local" and spec.gpus:
        cluster = gpu_local_cluster(spec.gpu_of_worker(), dashboard_address=dashboard_address)
    elif spec.kind == "local":
        cluster = local_cluster(spec.workers, dashboard_address=dashboard_address)
    elif spec.kind in JOBQUEUE_KINDS:
        cluster = jobqueue_cluster(spec, dashboard_address=dashboard_address)
        cluster.scale(jobs=spec.jobs)
    else:
        raise ValueError(f"unknown cluster kind {spec.kind!r}")
    with cluster, Client(cluster) as client:
        yield client
