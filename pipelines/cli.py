"""`x3kd-cache` as installed: teacher_export's commands, with pipelines' own `export`, which adds the Dask
options. pipelines is the top of the export side (DESIGN.md): it builds its own command group from
teacher_export's commands and leaves teacher_export's group (the single-process `x3kd-cache`) as it is;
teacher_export never imports pipelines."""
from __future__ import annotations

import inspect

import click

from cache_schema.errors import exit_2_on_user_error
from teacher_export.cli import export as single_process_export
from teacher_export.cli import main as single_process_main
from teacher_export.cli import run_export_command

CLUSTER_OPTIONS = [
    click.Option(["--cluster"], help="Run on Dask: local[:N] (N single-threaded worker processes; without N one per "
                                     "core), slurm or pbs (batch jobs through dask-jobqueue).  [default: one process]"),
    click.Option(["--scheduler"], help="Run on an existing Dask cluster: its scheduler address, tcp://HOST:8786."),
    click.Option(["--jobs"], type=int, help="slurm/pbs: number of batch jobs.  [default: 1]"),
    click.Option(["--cores"], type=int, help="slurm/pbs: cores per job, one worker process each."),
    click.Option(["--memory"], help="slurm/pbs: memory per job, e.g. 64GB."),
    click.Option(["--walltime"], help="slurm/pbs: time limit per job, e.g. 04:00:00."),
    click.Option(["--queue"], help="slurm/pbs: partition / queue name."),
    click.Option(["--gpus"], help="local with --device cuda: the GPUs to use, e.g. 0,1,2,3, one worker pinned to each "
                                  "(and --workers-per-gpu).  [default: the visible GPUs]"),
    click.Option(["--gpus-per-job"], type=int, help="slurm/pbs with --device cuda: GPUs each job requests, one worker "
                                                    "pinned to each.  [default: 1]"),
    click.Option(["--workers-per-gpu"], type=int, help="With --device cuda: worker processes sharing one GPU.  "
                                                       "[default: 1]"),
    click.Option(["--retries"], type=int, default=2, show_default=True,
                 help="With --cluster/--scheduler: times a failed shard task is retried."),
]


@exit_2_on_user_error
def _export(config_file, repair, cluster, scheduler, jobs, cores, memory, walltime, queue, gpus, gpus_per_job,
            workers_per_gpu, retries, **options) -> None:
    def runner(export_options):
        from pipelines.cluster import ClusterSpec

        # the device may come from the config file: the spec is made from the options as resolved
        spec = ClusterSpec.parse(cluster, scheduler, jobs=jobs, cores=cores, memory=memory, walltime=walltime,
                                 queue=queue, device=export_options.device, gpus=gpus, gpus_per_job=gpus_per_job,
                                 workers_per_gpu=workers_per_gpu)
        if spec is None:
            from teacher_export.export import export as single_process

            return single_process(export_options)
        from pipelines.cluster import connect
        from pipelines.export import export_on_cluster

        with connect(spec) as client:
            click.echo(f"Dask dashboard: {client.dashboard_link}  ({spec.describe()})")
            return export_on_cluster(export_options, client, retries=retries, cluster_name=spec.describe())

    run_export_command(config_file, repair, options, runner)


CLUSTER_HELP = """

With --cluster or --scheduler the shards are exported by Dask workers, each building the teachers
once; a failed shard task is retried, and re-running the command resumes.

\b
Examples:
  x3kd-cache export --config teachers/lab/export.yaml --lidar-checkpoint teachers/lab/lidar.pth \\
      --image-checkpoint teachers/lab/image.pth --dataroot demo_out/data --version v1.0-trainval \\
      --split train --out demo_out/cache_train.zarr --cluster local:2
  x3kd-cache export ... --device cuda --cluster local          # one worker per visible GPU
  x3kd-cache export ... --out s3://bucket/train.zarr --device cuda --cluster slurm --jobs 4 \\
      --gpus-per-job 8 --cores 64 --memory 480GB --walltime 04:00:00 --queue gpu
"""

export = click.Command("export", callback=_export, params=[*single_process_export.params, *CLUSTER_OPTIONS],
                       help=inspect.cleandoc(single_process_export.help or "") + CLUSTER_HELP)

main = click.Group(
    single_process_main.name, callback=single_process_main.callback, params=single_process_main.params,
    help=single_process_main.help, context_settings=single_process_main.context_settings,
    commands={**single_process_main.commands, "export": export})

if __name__ == "__main__":
    main()
