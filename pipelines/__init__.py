"""x3kd pipelines: the teacher export at dataset scale, as a Dask job over cache shards.

`pipelines.export.export_on_cluster(options, client)` runs it on any `distributed.Client`;
`pipelines.cluster` makes that client (LocalCluster, an existing scheduler, SLURM/PBS through
dask-jobqueue); `pipelines.plan` splits the store into shard tasks; `pipelines.worker` holds what runs
on a worker (its teachers, built once, and the shard task). `x3kd-cache export --cluster ...` is the CLI.
"""
