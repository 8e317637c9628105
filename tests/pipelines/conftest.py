"""The pipelines tests' dataroot (two synthetic scenes of NUM_SAMPLES key frames) and a LocalCluster of
two worker processes, shared by the package's tests."""
import pytest
from distributed import Client

from pipelines.cluster import local_cluster
from tests.pipelines.exporters import NUM_SAMPLES


@pytest.fixture(scope="package")
def dataroot(tmp_path_factory):
    from dataset_access.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("pipelines") / "nuscenes", scenes=2,
                              samples_per_scene=NUM_SAMPLES, seed=5)


@pytest.fixture(scope="package")
def client():
    with local_cluster(2, dashboard_address=":0") as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        yield client
