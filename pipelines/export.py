"""The export as a Dask job: one task per cache shard, teachers built once per worker.

The client reads the dataset's tables (once: no worker opens them) and summarises the split, asks one
worker for the store layout (so the client itself never builds a teacher or needs the accelerator the
workers use), creates the store, and submits the shards that still have work, each with its samples
built (a few KB each), a bounded number ahead of the workers so that neither client nor scheduler holds
the whole split's; it follows them with a progress bar, then checks that every sample is done and records
the run in the store attributes. Each task is `pipelines.worker.export_shard`, i.e. the single-process
export's own loop (`teacher_export.export.export_indices`) over one shard. With a GPU device every
task asks for a worker's `GPU` resource (`pipelines.cluster`), so it runs only where a GPU is pinned.

Failures: a task that raises is retried `retries` times (Dask's `retries=`); a killed worker's task is
rescheduled by Dask; either way the retried task skips the samples an earlier attempt finished and the
writer rewrites the shard whole. A client that dies loses nothing either: the same command resumes.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import replace
from typing import Any

from cache_schema import CacheReader, CacheWriter
from cache_schema.errors import UserInputError
from cache_schema.lease import Lease
from pipelines.cluster import GPU_RESOURCE
from pipelines.plan import ShardTask, plan_shards
from pipelines.worker import Exporter, ExporterFactory, ShardResult, describe_store, export_shard
from teacher_export.export import ExportOptions, ExportResult, SplitSummary, StageTimes, run_record, split_samples

log = logging.getLogger(__name__)


def export_on_cluster(options: ExportOptions, client: Any, *, retries: int = 2, progress: bool = True,
                      exporter_factory: ExporterFactory = Exporter, cluster_name: str = "") -> ExportResult:
    """Export a split into the cache at `options.out` with the workers of `client` (a distributed.Client).

    Resumes a store made with the same options, like `teacher_export.export.export`, whose store it
    equals array for array. `exporter_factory(options)` builds each worker's Exporter (tests pass a
    subclass to inject delays or failures)."""
    if retries < 0:
        raise UserInputError(f"--retries: must be >= 0, got {retries}")
    options = _absolute_paths(options)
    # The client holds the store's lease for its workers, which write only the shards it gives them.
    with Lease(options.out, "store", options.storage_options, label=f"--out {options.out}"):
        return _export_on_cluster(options, client, retries, progress, exporter_factory, cluster_name)


def _export_on_cluster(options: ExportOptions, client: Any, retries: int, progress: bool,
                       exporter_factory: ExporterFactory, cluster_name: str) -> ExportResult:
    started = time.perf_counter()
    run = uuid.uuid4().hex[:8]

    resources = gpu_task_resources(options.device)
    if resources:
        _require_gpu_workers(client)
    log.info("reading the dataset's tables for the split (here, once)")
    samples = split_samples(options)
    split = SplitSummary.of(samples, options)
    log.info("building the teachers on a worker for the store layout (waits for the first worker)")
    layout = client.submit(describe_store, options, split, exporter_factory, key=f"x3kd-describe-store-{run}",
                           retries=retries, pure=False, resources=resources).result()
    writer = CacheWriter(options.out, layout.config, layout.provenance, storage_options=options.storage_options,
                         create=True)
    config = layout.config
    done_mask = writer.done_mask
    tasks = plan_shards(config, done_mask)
    todo = sum(t.todo for t in tasks)
    log.info("%s: %d of %d samples to export in %d shard tasks", options.out, todo, config.num_samples, len(tasks))

    waiting = list(tasks)
    futures: dict[Any, ShardTask] = {}

    def submit_next() -> Any:
        task = waiting.pop(0)
        rows = [i for i in task.indices if not done_mask[i]]
        future = client.submit(export_shard, options, task.shard, split, samples.subset(rows), exporter_factory,
                               key=f"{task.key}-{run}", retries=retries, pure=False, resources=resources)
        futures[future] = task
        return future

    times = StageTimes()
    bar = None
    if progress and todo:
        from cache_schema.progress import progress as progress_bar

        bar = progress_bar(total=todo, desc="export", unit="sample", smoothing=0.1)
    try:
        from distributed import as_completed

        running = as_completed([submit_next() for _ in range(min(len(waiting), _tasks_ahead(client)))])
        for future in running:
            result: ShardResult = future.result()  # re-raises the task's error once its retries are spent
            times.add(result.times)
            if bar is not None:
                # the plan's count: a retried task writes only what its failed attempt did not finish
                bar.update(futures[future].todo)
            log.debug("shard %d: %d samples in %.1f s on %s", result.shard, result.written, result.seconds,
                      result.worker)
            del futures[future]
            while waiting and len(futures) < _tasks_ahead(client):
                running.add(submit_next())
    except BaseException:
        # What finished is on disk with its done flags; the same command resumes from there.
        client.cancel(list(futures))
        raise
    finally:
        if bar is not None:
            bar.close()

    done = CacheReader(options.out, storage_options=options.storage_options).done_mask
    if not done.all():
        missing = [i for i in range(config.num_samples) if not done[i]]
        raise RuntimeError(f"{options.out}: {len(missing)} samples not done after all shard tasks finished "
                           f"(first: {missing[:5]}); run the same command again to resume")
    seconds = time.perf_counter() - started
    if tasks:
        workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        writer.record_run(run_record(todo, seconds, options.device, cluster=cluster_name or "dask",
                                     workers=workers, shards=len(tasks), retries=retries))
    return ExportResult(options.out, config.num_samples, todo, config.num_samples - todo, seconds, times)


def _tasks_ahead(client: Any) -> int:
    """Shard tasks kept submitted: two per worker (one running, one queued so that none waits for the
    client), at least four; re-read as batch jobs' workers arrive."""
    workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    return max(4, 2 * workers)


def _require_gpu_workers(client: Any) -> None:
    """A CUDA export's tasks wait for a worker with a GPU resource: refuse a cluster whose workers (if
    any have joined yet) offer none, rather than wait for ever."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if workers and not any(w.get("resources", {}).get(GPU_RESOURCE) for w in workers.values()):
        raise UserInputError(f"--device cuda: none of the cluster's {len(workers)} workers offers a {GPU_RESOURCE} "
                             f"resource; start GPU workers with `dask worker ... --resources {GPU_RESOURCE}=1` (one "
                             "per GPU, CUDA_VISIBLE_DEVICES set) or `python -m pipelines.gpu_worker`")


def gpu_task_resources(device: str) -> dict[str, int] | None:
    """The Dask resources an export task on `device` asks for: a worker's GPU for a CUDA device (only
    GPU workers offer it), nothing on the CPU."""
    return {GPU_RESOURCE: 1} if str(device).startswith("cuda") else None


def _absolute_paths(options: ExportOptions) -> ExportOptions:
    """Local paths made absolute, so that workers started elsewhere (another cwd) find them."""
    changes = {name: _absolute(getattr(options, name)) for name in ("dataroot", "out") if getattr(options, name)}
    # these may also be names or inline JSON (lidar_config): only existing files are paths
    for name in ("lidar_checkpoint", "lidar_config", "image_checkpoint"):
        value = getattr(options, name)
        if value and os.path.exists(os.path.expanduser(str(value))):
            changes[name] = _absolute(value)
    return replace(options, **changes)


def _absolute(path: str) -> str:
    return str(path) if "://" in str(path) else os.path.abspath(os.path.expanduser(str(path)))
