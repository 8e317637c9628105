import multiprocessing as mp

import numpy as np
import pytest
import zarr

from cache_schema import ARRAYS, CacheReader, CacheWriter, UserInputError, validate
from cache_schema.layout import affine_key
from cache_schema.quantize import decode, encode, relative_l2
from cache_schema.views import CacheSample
from tests.cache_schema.samples import make_sample, smooth_map, tiny_config


def write_store(url, config, indices=None, provenance=None):
    with CacheWriter(url, config, provenance or {"lidar": "test"}) as writer:
        for i in range(config.num_samples) if indices is None else indices:
            writer.write_sample(i, CacheSample.from_arrays(make_sample(config, i)))
    return url


@pytest.mark.parametrize("bev_quantization", ["int8", "float16"])
def test_every_array_round_trips(tmp_path, bev_quantization):
    config = tiny_config(bev_quantization=bev_quantization)
    url = write_store(str(tmp_path / "store"), config)
    reader = CacheReader(url)
    assert len(reader) == config.num_samples
    for i in (0, 5, 9):
        expected, sample = make_sample(config, i), reader[i]
        assert sample.index == i
        got = sample.to_arrays()
        for spec in ARRAYS:
            value = got[spec.key]
            if spec.kind == "text":
                assert value == expected[spec.key]
            elif spec.kind == "dense":
                assert value.dtype == np.float32 and value.shape == expected[spec.key].shape
                tolerance = 2e-2 if spec.quantization(config) == "int8" else 2e-3
                assert relative_l2(expected[spec.key], value) < tolerance
            elif np.issubdtype(np.dtype(spec.dtype), np.floating):
                assert value.dtype == np.float32
                np.testing.assert_allclose(value, expected[spec.key], rtol=1e-6)
            else:
                np.testing.assert_array_equal(value, expected[spec.key])


def test_int8_error_bound_per_channel():
    rng = np.random.default_rng(0)
    values = smooth_map(rng, (16, 40, 40))
    values[3] *= 100.0  # one loud channel must not flatten the others
    stored, affine = encode(values, "int8")
    assert stored.dtype == np.int8 and affine.shape == (2, 16)
    back = decode(stored, "int8", affine)
    step = affine[0][:, None, None]
    assert np.all(np.abs(back - values) <= step / 2 + 1e-6)
    for ch in range(16):
        assert relative_l2(values[ch], back[ch]) < 2e-2


def test_float16_and_constant_channel():
    values = np.zeros((2, 4, 4), np.float32)
    values[1] = 7.25
    for mode in ("float16", "int8"):
        stored, affine = encode(values, mode)
        np.testing.assert_allclose(decode(stored, mode, affine), values, atol=1e-6)


def test_int8_store_records_mode_and_affine(tmp_path):
    config = tiny_config(bev_quantization="int8")
    url = write_store(str(tmp_path / "s"), config)
    root = zarr.open_group(url, mode="r")
    feats = root["lidar_teacher/bev_features"]
    assert feats.dtype == np.int8
    assert feats.attrs["x3kd"]["quantization"] == "int8"
    assert root[affine_key(next(a for a in ARRAYS if a.name == "bev_features"))].shape == (10, 2, 8)
    assert root["lidar_teacher/heatmaps"].dtype == np.float16
    codecs = feats.metadata.to_dict()["codecs"][0]["configuration"]["codecs"]
    assert [c["name"] for c in codecs] == ["bytes", "zstd", "crc32c"]


def test_select_token_lookup_and_memory_url():
    config = tiny_config(num_samples=5)
    url = write_store("memory://x3kd-roundtrip", config)
    reader = CacheReader(url).select(["meta", "gt"])
    sample = reader.by_token("token-0003")
    assert sample.index == 3
    assert {k.split("/")[0] for k in sample.to_arrays()} == {"meta", "gt"}
    with pytest.raises(KeyError, match="nope"):
        reader.index_of("nope")
    with pytest.raises(UserInputError, match="no group"):
        CacheReader(url, groups=["sonar"])


def test_optional_groups_can_be_left_out(tmp_path):
    config = tiny_config(groups=("meta", "calib", "gt", "depth"))
    url = str(tmp_path / "s")
    with CacheWriter(url, config) as writer:
        for i in range(config.num_samples):
            sample = {k: v for k, v in make_sample(config, i).items() if k.split("/")[0] in config.groups}
            writer.write_sample(i, CacheSample.from_arrays(sample))
    assert "lidar_teacher" not in zarr.open_group(url, mode="r")
    assert validate(url).ok
    with pytest.raises(UserInputError):
        CacheReader(url, groups=["lidar_teacher"])


def test_reopen_with_other_config_or_teachers_is_refused(tmp_path):
    url = str(tmp_path / "s")
    config = tiny_config()
    write_store(url, config, indices=[0], provenance={"lidar": "a"})
    with pytest.raises(UserInputError, match="bev_channels"):
        CacheWriter(url, tiny_config(bev_channels=16), {"lidar": "a"})
    with pytest.raises(UserInputError, match="lidar"):
        CacheWriter(url, config, {"lidar": "b"})
    CacheWriter(url, config, {"lidar": "a"})  # same identity reopens


def test_bad_samples_are_rejected_with_the_key(tmp_path):
    config = tiny_config()
    writer = CacheWriter(str(tmp_path / "s"), config)
    sample = make_sample(config, 0)
    with pytest.raises(ValueError, match="gt/boxes has shape"):
        writer.write_sample(0, CacheSample.from_arrays({**sample, "gt/boxes": np.zeros((2, 9), np.float32)}))
    with pytest.raises(ValueError, match="unknown keys"):
        writer.write_sample(0, CacheSample.from_arrays({**sample, "gt/extra": 1}))
    with pytest.raises(ValueError, match="missing depth/depth"):
        writer.write_sample(0, CacheSample.from_arrays({k: v for k, v in sample.items() if k != "depth/depth"}))
    with pytest.raises(ValueError, match="NaN"):
        heat = sample["lidar_teacher/heatmaps"].copy()
        heat[0, 0, 0] = np.nan
        writer.write_sample(0, CacheSample.from_arrays({**sample, "lidar_teacher/heatmaps": heat}))
    assert not writer.done_mask.any()


def _read_in_child(reader, index, queue):
    sample = reader[index]
    queue.put((sample.token, float(sample.lidar_teacher.bev_features.sum())))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reader_works_in_forked_and_spawned_workers(tmp_path, method):
    config = tiny_config()
    url = write_store(str(tmp_path / "s"), config)
    reader = CacheReader(url)
    expected = reader[7]  # the parent has open handles and caches before the child starts
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(reader, 7, queue))
    child.start()
    token, total = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert token == expected.token
    assert total == pytest.approx(float(expected.lidar_teacher.bev_features.sum()), rel=1e-6)


def test_direct_chunk_reads_equal_zarr_and_check_crc(tmp_path):
    from cache_schema.chunks import ChunkReader

    config = tiny_config()
    url = write_store(str(tmp_path / "s"), config, indices=range(6))  # shard 1 half written, shard 2 absent
    root = zarr.open_group(url, mode="r")
    for key in ("lidar_teacher/bev_features", "lidar_teacher/bev_features_affine", "lidar_teacher/heatmaps",
                "depth/depth", "image_teacher/masks"):
        chunks = ChunkReader(root[key])
        assert chunks._direct
        for i in range(config.num_samples):
            np.testing.assert_array_equal(chunks.read(i), root[key][i], err_msg=f"{key}[{i}]")
    path = tmp_path / "s" / "lidar_teacher" / "heatmaps" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside the first chunk (sample 0)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="(?i)checksum"):
        ChunkReader(root["lidar_teacher/heatmaps"]).read(0)


def test_arrays_with_foreign_encoding_are_read_through_zarr(tmp_path):
    from cache_schema.chunks import ChunkReader

    plain = zarr.create_array(str(tmp_path / "plain"), shape=(4, 3), dtype="float32", chunks=(2, 3))
    plain[:] = np.arange(12, dtype=np.float32).reshape(4, 3)
    reader = ChunkReader(plain)
    assert not reader._direct
    np.testing.assert_array_equal(reader.read(3), [9, 10, 11])
