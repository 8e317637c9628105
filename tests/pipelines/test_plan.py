import numpy as np
import pytest

from cache_schema.errors import UserInputError
from pipelines.cluster import ClusterSpec, jobqueue_cluster
from pipelines.plan import plan_shards
from tests.cache_schema.samples import tiny_config


def test_plan_covers_not_done_samples_with_whole_shards():
    config = tiny_config(num_samples=10, shard_size=4)  # shards [0,4) [4,8) [8,10)
    done = np.zeros(10, bool)
    done[0:4] = True  # complete shard: no task
    done[5] = True  # partly done shard: a task for the other three
    tasks = plan_shards(config, done)
    assert [t.shard for t in tasks] == [1, 2]
    assert [t.indices for t in tasks] == [range(4, 8), range(8, 10)]
    assert [t.todo for t in tasks] == [3, 2]
    assert len({t.key for t in tasks}) == 2
    assert plan_shards(config, np.ones(10, bool)) == []
    with pytest.raises(ValueError):
        plan_shards(config, np.zeros(9, bool))


def test_cluster_spec_parse():
    assert ClusterSpec.parse() is None
    assert ClusterSpec.parse("local") == ClusterSpec("local")
    assert ClusterSpec.parse("local:3") == ClusterSpec("local", workers=3)
    assert ClusterSpec.parse(scheduler="tcp://head:8786") == ClusterSpec("scheduler", address="tcp://head:8786")
    spec = ClusterSpec.parse("SLURM", jobs=4, cores=8, memory="64GB", walltime="04:00:00", queue="gpu")
    assert spec == ClusterSpec("slurm", jobs=4, cores=8, memory="64GB", walltime="04:00:00", queue="gpu")


@pytest.mark.parametrize("args, kwargs, words", [
    (("local:two",), {}, "local:N"),
    (("local:0",), {}, "at least one"),
    (("kubernetes",), {}, "expected local"),
    (("local", "tcp://head:8786"), {}, "one of them"),
    ((None, "head:8786"), {}, "tcp://"),
    (("local:2",), {"jobs": 2}, "--jobs"),
    (("slurm",), {"cores": 0}, "--cores"),
])
def test_cluster_spec_rejects_bad_options(args, kwargs, words):
    with pytest.raises(UserInputError, match=words):
        ClusterSpec.parse(*args, **kwargs)


def test_jobqueue_backend_without_dask_jobqueue_is_a_user_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "dask_jobqueue", None)  # import fails
    with pytest.raises(UserInputError, match=r"x3kd\[cluster\]"):
        jobqueue_cluster(ClusterSpec("slurm", cores=2, memory="4GB"))
