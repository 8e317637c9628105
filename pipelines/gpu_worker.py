"""A batch job's Dask workers, one per GPU: `python -m pipelines.gpu_worker SCHEDULER --nworkers N ...`.

dask-jobqueue runs this as the job's worker command when an export asks for `--gpus-per-job`
(`pipelines.cluster`). It reads the GPUs the batch system gave the job (CUDA_VISIBLE_DEVICES, as
SLURM's `--gres` and PBS's `ngpus` set it) and starts N `dask worker` processes, worker i pinned to
GPU i mod G (`--workers-per-gpu` of them share one), each offering one `GPU` resource, and named
NAME-i as dask-jobqueue names a job's workers. The other options (--nthreads, --memory-limit,
--death-timeout, --local-directory, ...) pass through to every worker. It exits when they do; a
signal (the batch system's end of job) is passed on to them.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from pipelines.cluster import GPU_RESOURCE, visible_gpus


def worker_commands(scheduler: str, name: str, nworkers: int, workers_per_gpu: int, gpus: tuple[str, ...],
                    passthrough: list[str]) -> list[tuple[list[str], dict[str, str]]]:
    """(command, environment changes) for each of the job's workers."""
    if not gpus:
        raise SystemExit("pipelines.gpu_worker: this job sees no GPU (CUDA_VISIBLE_DEVICES is empty and torch "
                         "finds none); request GPUs from the batch system (--gpus-per-job)")
    if nworkers > len(gpus) * workers_per_gpu:
        print(f"pipelines.gpu_worker: {nworkers} workers for {len(gpus)} GPUs x {workers_per_gpu}: some GPUs "
              "get more workers than asked", file=sys.stderr)
    commands = []
    for i in range(nworkers):
        command = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--name", f"{name}-{i}",
                   "--nworkers", "1", "--nanny", "--resources", f"{GPU_RESOURCE}=1", *passthrough]
        commands.append((command, {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]}))
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.gpu_worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scheduler", help="the scheduler's address, tcp://HOST:PORT")
    parser.add_argument("--name", default=f"gpu-{os.getpid()}", help="the job's name; worker i is NAME-i")
    parser.add_argument("--nworkers", type=int, required=True, help="workers to start in this job")
    parser.add_argument("--workers-per-gpu", type=int, default=1, help="workers sharing one GPU")
    args, passthrough = parser.parse_known_args(argv)
    if args.nworkers < 1 or args.workers_per_gpu < 1:
        parser.error("--nworkers and --workers-per-gpu must be >= 1")
    commands = worker_commands(args.scheduler, args.name, args.nworkers, args.workers_per_gpu, visible_gpus(),
                               passthrough)
    children = [subprocess.Popen(command, env={**os.environ, **changes}) for command, changes in commands]

    def pass_on(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, pass_on)
    codes = [child.wait() for child in children]
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main())
