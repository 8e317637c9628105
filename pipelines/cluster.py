"""Where the Dask workers come from: a LocalCluster, an existing scheduler, or SLURM/PBS jobs.

`ClusterSpec.parse` turns the `x3kd-cache export` options into a spec; `connect(spec)` starts (or
joins) the cluster and yields a `distributed.Client`. Every worker runs one task at a time with one
Dask thread: the teachers are per-process state, and torch parallelises inside a task anyway.

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


@dataclass(frozen=True)
class ClusterSpec:
    """A cluster to run an export on.

    kind: "local" (a LocalCluster of `workers` processes), "scheduler" (join `address`), or "slurm"
    / "pbs" (`jobs` batch jobs of `cores` cores and `memory` each, every core one single-threaded
    worker process)."""

    kind: str
    workers: int | None = None
    address: str | None = None
    jobs: int = 1
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    queue: str | None = None

    @classmethod
    def parse(cls, cluster: str | None = None, scheduler: str | None = None, *, jobs: int | None = None,
              cores: int | None = None, memory: str | None = None, walltime: str | None = None,
              queue: str | None = None) -> "ClusterSpec | None":
        """The spec for `--cluster`/`--scheduler` and the job options; None means a single-process export."""
        jobqueue = {"--jobs": jobs, "--cores": cores, "--memory": memory, "--walltime": walltime, "--queue": queue}
        given = [name for name, value in jobqueue.items() if value is not None]
        if cluster and scheduler:
            raise UserInputError("--cluster and --scheduler: give one of them")
        kind, _, count = (cluster or "").strip().lower().partition(":")
        if given and kind not in JOBQUEUE_KINDS:
            raise UserInputError(f"{', '.join(given)}: only with --cluster slurm or --cluster pbs")
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
            return cls("local", workers=workers)
        if kind in JOBQUEUE_KINDS and not count:
            if jobs is not None and jobs < 1:
                raise UserInputError(f"--jobs: must be >= 1, got {jobs}")
            if cores is not None and cores < 1:
                raise UserInputError(f"--cores: must be >= 1, got {cores}")
            return cls(kind, jobs=jobs or 1, cores=cores, memory=memory, walltime=walltime, queue=queue)
        raise UserInputError(f"--cluster {cluster!r}: expected local, local:N, slurm or pbs")

    def describe(self) -> str:
        if self.kind == "local":
            return f"local:{self.workers}" if self.workers else "local"
        if self.kind == "scheduler":
            return str(self.address)
        return f"{self.kind} ({self.jobs} jobs x {self.cores or 'configured'} cores)"


def local_cluster(workers: int | None = None, *, dashboard_address: str | None = ":8787", **kwargs: Any):
    """A LocalCluster of single-threaded worker processes (one per CPU core when `workers` is None)."""
    import os

    from distributed import LocalCluster

    kwargs.setdefault("silence_logs", logging.ERROR)
    return LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                        dashboard_address=dashboard_address, **kwargs)


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
    job = {k: v for k, v in job.items() if v is not None}
    scheduler_options = {"dashboard_address": dashboard_address, **kwargs.pop("scheduler_options", {})}
    try:
        return cls(scheduler_options=scheduler_options, **job, **kwargs)
    except ValueError as e:  # dask-jobqueue's own checks, e.g. cores/memory neither given nor configured
        raise UserInputError(f"--cluster {spec.kind}: {' '.join(str(e).split())}") from None


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
    if spec.kind == "local":
        cluster = local_cluster(spec.workers, dashboard_address=dashboard_address)
    elif spec.kind in JOBQUEUE_KINDS:
        cluster = jobqueue_cluster(spec, dashboard_address=dashboard_address)
        cluster.scale(jobs=spec.jobs)
    else:
        raise ValueError(f"unknown cluster kind {spec.kind!r}")
    with cluster, Client(cluster) as client:
        yield client
