"""Creating and opening x3kd stores: root metadata, array creation from the layout, version rules."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from .errors import UserInputError
from .layout import (
    DONE, SCHEMA_VERSION, StoreConfig, affine_key, arrays_for,
)

log = logging.getLogger(__name__)

ATTRS_KEY = "x3kd"
ZSTD_LEVEL = 1  # level 3 saved <1% at twice the encode cost (DESIGN.md)


def software_version() -> str:
    try:
        from importlib.metadata import version
        return version("x3kd")
    except Exception:  # running from a source tree that was never installed
        return "unknown"


@dataclass(frozen=True)
class StoreMeta:
    """What the root attributes say about a store."""

    schema_version: str
    config: StoreConfig
    provenance: dict[str, Any] = field(default_factory=dict)
    software_version: str = "unknown"
    runs: tuple[dict, ...] = ()

    def to_json(self) -> dict:
        return {"schema_version": self.schema_version, "config": self.config.to_json(),
                "provenance": self.provenance, "software_version": self.software_version,
                "runs": list(self.runs)}


def _compressors() -> list:
    return [ZstdCodec(level=ZSTD_LEVEL), Crc32cCodec()]


def open_root(url: str, mode: str, storage_options: dict | None = None) -> zarr.Group:
    """Open the root group at a local path or fsspec URL (s3://, gs://, memory://, file://, ...)."""
    if url.startswith("file://"):
        # zarr's local store, not fsspec's, which does not create the directories of a new store
        url = url[len("file://"):]
    try:
        return zarr.open_group(url, mode=mode, zarr_format=3, storage_options=storage_options)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
        raise UserInputError(f"{url}: no x3kd cache here ({type(e).__name__})") from None
    except NotADirectoryError:
        raise UserInputError(f"{url}: a file is in the way (a store is a directory)") from None
    except (zarr.errors.ContainsArrayError, ValueError) as e:
        raise UserInputError(f"{url}: not a Zarr v3 group ({e})") from None
    except Exception as e:
        if _is_credentials_error(e):
            raise UserInputError(f"{url}: cannot access it ({type(e).__name__}: {str(e).splitlines()[0]}); "
                                 f"{_CREDENTIALS_HINT.get(url.split('://')[0], 'check the credentials of this URL')}") \
                from None
        raise


_CREDENTIALS_HINT = {
    "s3": "s3fs reads credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or AWS_PROFILE, "
          "or storage_options (key, secret, endpoint_url) in the export YAML",
    "gs": "gcsfs reads GOOGLE_APPLICATION_CREDENTIALS or gcloud's default login, or storage_options (token)",
}


def _is_credentials_error(e: Exception) -> bool:
    names = {type(c).__name__ for c in (e, e.__cause__, e.__context__) if c is not None}
    return isinstance(e, PermissionError) or any("Credentials" in n or n in ("ClientError", "AccessDenied")
                                                 for n in names)


def refuse_volatile(url: str, option: str = "--out") -> None:
    """A store that cannot outlive the command (memory://) is refused for writing: the export would
    report samples written and then vanish with the process."""
    if url.startswith("memory://"):
        raise UserInputError(f"{option} {url}: an in-memory store disappears when the command ends; give a path or "
                             "a persistent URL (file://, s3://, gs://)")


def read_meta(root: zarr.Group, url: str) -> StoreMeta:
    """Parse and check the root attributes; refuse stores of an unknown major schema version."""
    attrs = root.attrs.asdict().get(ATTRS_KEY)
    if not attrs:
        raise UserInputError(f"{url}: not an x3kd cache (no '{ATTRS_KEY}' attributes; creation may have been interrupted)")
    version = str(attrs.get("schema_version", "?"))
    check_schema_version(version, url)
    try:
        config = StoreConfig.from_json(attrs["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserInputError(f"{url}: store config is unreadable ({e})") from None
    return StoreMeta(version, config, attrs.get("provenance", {}), attrs.get("software_version", "unknown"),
                     tuple(attrs.get("runs", ())))


def check_schema_version(version: str, url: str) -> None:
    ours = int(SCHEMA_VERSION.split(".")[0])
    try:
        theirs = int(version.split(".")[0])
    except ValueError:
        raise UserInputError(f"{url}: unreadable schema version {version!r}") from None
    if theirs != ours:
        raise UserInputError(f"{url}: schema version {version} is not readable by this x3kd "
                             f"(reads {ours}.x); use a matching x3kd release or re-export")


def create_arrays(root: zarr.Group, config: StoreConfig) -> None:
    """Create every array of the layout (empty), overwriting arrays left by an interrupted creation."""
    n, s = config.num_samples, config.shard_size
    for spec in arrays_for(config):
        shape = spec.sample_shape(config)
        if len(spec.dims) != len(shape):
            raise ValueError(f"layout: {spec.key} names {len(spec.dims)} dimensions for a {len(shape)}-d sample")
        _create(root, spec.key, (n, *shape), spec.disk_dtype(config), spec.fill_value, s,
                {"kind": spec.kind, "quantization": spec.quantization(config), "doc": spec.doc,
                 **({"affine": affine_key(spec)} if spec.quantization(config) == "int8" else {})},
                ("sample", *spec.dims))
        if spec.quantization(config) == "int8":
            _create(root, affine_key(spec), (n, 2, shape[0]), "float32", 0.0, s,
                    {"kind": "affine", "doc": f"(scale, offset) per channel of {spec.key}: x = q*scale + offset"},
                    ("sample", "scale_offset", spec.dims[0]))
    root.create_array(DONE.key, shape=(n,), dtype=DONE.dtype, chunks=(s,), compressors=_compressors(),
                      fill_value=0, overwrite=True, config={"write_empty_chunks": True}, dimension_names=("sample",),
                      attributes={ATTRS_KEY: {"kind": "done", "doc": DONE.doc}})


def _create(root: zarr.Group, key: str, shape: tuple[int, ...], dtype: str, fill: float | int, shard: int,
            attrs: dict, dims: tuple[str, ...]) -> None:
    root.create_array(key, shape=shape, dtype=dtype, chunks=(1, *shape[1:]), shards=(shard, *shape[1:]),
                      compressors=_compressors(), fill_value=fill, overwrite=True,
                      config={"write_empty_chunks": True}, dimension_names=dims,
                      attributes={ATTRS_KEY: attrs})


def write_meta(root: zarr.Group, meta: StoreMeta) -> None:
    root.attrs[ATTRS_KEY] = meta.to_json()

