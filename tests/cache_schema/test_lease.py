"""One writer at a time (cache_schema.lease): exclusive, refused with the holder named, taken over when the
holder is gone, nested within one process, on a local folder and on fsspec stores."""
from __future__ import annotations

import json
import multiprocessing as mp
import platform
import time
from dataclasses import asdict

import pytest

from cache_schema.lease import LEASE_NAME, STALE_SECONDS, Holder, Lease, StoreLeased, describe_writer, lease_holder


def _write_lease(folder, **changes) -> Holder:
    holder = Holder(**{**dict(host=platform.node(), pid=1, command="x3kd-cache export --out s", started="then",
                             refreshed=time.time(), token="t" * 32), **changes})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LEASE_NAME).write_text(json.dumps(asdict(holder)))
    return holder


def test_a_second_writer_is_refused_naming_the_first_and_the_lease_goes_with_the_first(tmp_path):
    store = tmp_path / "store.zarr"
    with Lease(str(store), label="--out s"):
        holder = lease_holder(str(store))
        assert holder is not None and holder.pid == __import__("os").getpid()
        with pytest.raises(StoreLeased, match=r"another writer holds this store: .*pid"):
            # another process's lease: held in a child, so that it is not this process's own
            _refused_in_child(str(store))
        assert "pid" in describe_writer(str(store))
    assert lease_holder(str(store)) is None and describe_writer(str(store)) == ""
    with Lease(str(store)):  # free again
        pass


def _try(url, options, queue):
    try:
        Lease(url, storage_options=options).acquire()
        queue.put("acquired")
    except StoreLeased as e:
        queue.put(f"refused: {e}")


def _refused_in_child(url: str, options: dict | None = None) -> None:
    """Try to take the lease from another process; raise StoreLeased with its message if refused."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_try, args=(url, options, queue))
    child.start()
    answer = queue.get(timeout=120)
    child.join(timeout=60)
    if answer.startswith("refused: "):
        raise StoreLeased(answer.removeprefix("refused: "))


def test_nested_leases_of_one_process_share_the_outer_one(tmp_path):
    with Lease(str(tmp_path / "s")) as outer:
        with Lease(str(tmp_path / "s")):
            pass
        assert lease_holder(str(tmp_path / "s")).token == outer.holder.token  # the inner one released nothing
    assert lease_holder(str(tmp_path / "s")) is None


def test_a_dead_holder_on_this_host_is_taken_over_with_a_line_saying_so(tmp_path, capsys):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write_lease(tmp_path / "s", pid=int(dead.stdout))
    with Lease(str(tmp_path / "s")) as lease:
        assert lease_holder(str(tmp_path / "s")).token == lease.holder.token
    assert f"no process {int(dead.stdout)} on this host" in capsys.readouterr().err


def test_a_holder_elsewhere_counts_as_gone_only_after_the_stale_time(tmp_path):
    _write_lease(tmp_path / "s", host="some-other-node", refreshed=time.time() - 60)
    with pytest.raises(StoreLeased, match="some-other-node"):
        Lease(str(tmp_path / "s")).acquire()
    _write_lease(tmp_path / "s", host="some-other-node", refreshed=time.time() - STALE_SECONDS - 60)
    assert "gone: not refreshed" in describe_writer(str(tmp_path / "s"))
    with Lease(str(tmp_path / "s")):
        assert lease_holder(str(tmp_path / "s")).host == platform.node()


def test_the_holder_refreshes_its_lease(tmp_path):
    with Lease(str(tmp_path / "s"), refresh_seconds=0.05):
        first = lease_holder(str(tmp_path / "s")).refreshed
        time.sleep(0.5)
        assert lease_holder(str(tmp_path / "s")).refreshed > first


def test_a_file_in_the_way_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(Exception, match="--out f: a file is in the way"):
        Lease(str(tmp_path / "f"), label="--out f").acquire()


def test_leases_on_fsspec_stores(s3_server):
    options = s3_server("x3kd-leases")
    url = "s3://x3kd-leases/train.zarr"
    with Lease(url, storage_options=options):
        assert lease_holder(url, options) is not None
        with pytest.raises(StoreLeased):
            _refused_in_child(url, options)
    assert lease_holder(url, options) is None
    with Lease("memory://x3kd-lease-test/s"):
        assert lease_holder("memory://x3kd-lease-test/s") is not None

