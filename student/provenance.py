"""What a student was trained from, recorded in every checkpoint and checked wherever it matters.

`run_provenance` describes the cache (teachers and their checkpoint sha256, dataset version, split,
samples, the dataroot's images), the dataroot's nuScenes tables and the software. `--resume` refuses a
checkpoint made from another cache (`check_same_cache`) and names the config keys that changed
(`check_resume_config`); `eval` prints `describe` and refuses a dataroot of other tables.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from cache_schema.errors import UserInputError
from cache_schema.identity import first_difference, tables_fingerprint
from cache_schema.store import software_version

# Config keys that may change when a run is resumed: length, logging and bookkeeping. Everything else
# (model, losses, data, optimiser, seed) would make the resumed run a different experiment.
RESUMABLE_KEYS = frozenset({
    "train.steps", "train.epochs", "train.log_every", "train.image_every", "train.checkpoint_every",
    "train.keep_checkpoints", "train.validate_cache", "data.num_workers", "data.prefetch_factor",
    "data.multiprocessing_context"})


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, when it is a git checkout."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def run_provenance(cache_url: str, reader: Any, dataroot: str | Path | None) -> dict[str, Any]:
    """The identity of a training run's inputs and software (JSON-able)."""
    prov = reader.meta.provenance
    cache: dict[str, Any] = {"dataset": dict(prov.get("dataset", {})), "num_samples": len(reader),
                             "schema_version": reader.meta.schema_version}
    for kind in ("lidar_teacher", "image_teacher"):
        if kind in prov:
            cache[kind] = {"name": prov[kind].get("name"), "checkpoint_sha256": prov[kind].get("checkpoint_sha256")}
    version = cache["dataset"].get("version")
    tables = (tables_fingerprint(dataroot, version)
              if dataroot is not None and version and (Path(dataroot) / version).is_dir() else None)
    return {"cache": cache, "cache_url": str(cache_url), "dataroot": str(dataroot) if dataroot is not None else None,
            "dataroot_tables_sha256": tables,
            "software": {"x3kd": software_version(), "git_commit": git_commit()}}


def check_same_cache(old: dict[str, Any] | None, new: dict[str, Any], checkpoint: Path) -> None:
    """--resume continues a run only on the cache it started on."""
    if not old:
        return  # a checkpoint from before provenance was recorded
    if old.get("cache") != new["cache"]:
        raise UserInputError(f"{checkpoint}: was trained on another cache ({_say(first_difference(old['cache'], new['cache'], old_name='checkpoint', new_name='cache'))}); "
                             f"resume with the cache it started on ({old.get('cache_url')})")


def _say(difference: str) -> str:
    """first_difference's 'key: a != b' with the hashes' meaning spelled out."""
    return difference.replace("sample_tokens_sha256", "sample list").replace("images_sha256", "camera images") \
        .replace("checkpoint_sha256", "teacher checkpoint")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def check_resume_config(old: dict[str, Any], new: dict[str, Any], step: int, checkpoint: Path) -> list[str]:
    """The keys whose change a resume accepts (returned, to log); any other difference is refused with
    the keys named."""
    a, b = _flatten(old), _flatten(new)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    # the model's identity first: a run of another modality or backbone is the decisive difference, not
    # the dozens of keys that follow from it
    refused = sorted((k for k in changed if k not in RESUMABLE_KEYS), key=lambda k: (not k.startswith(
        ("model.modality", "model.backbone", "model.image_size", "model.point_cloud_range")),
        not k.startswith("model."), k))
    if refused:
        shown = ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in refused[:4])
        more = f" and {len(refused) - 4} more" if len(refused) > 4 else ""
        raise UserInputError(f"{checkpoint}: resuming with another config: {shown}{more}; only "
                             f"{', '.join(sorted(RESUMABLE_KEYS))} may change (see config.yaml in the run directory)")
    steps = b.get("train.steps")
    if steps is not None and steps < step:
        raise UserInputError(f"{checkpoint}: train.steps={steps} but the run is already at step {step}")
    return changed


def describe(provenance: dict[str, Any] | None) -> str:
    """One paragraph for `eval`: what the student was distilled from."""
    if not provenance:
        return "provenance: not recorded (a checkpoint from before x3kd recorded it)"
    if "converted_from" in provenance:
        src = provenance["converted_from"]
        return (f"converted from a BEVDepth checkpoint, not trained by x3kd: {src.get('path')} "
                f"(sha256 {str(src.get('sha256'))[:12]})")
    cache = provenance.get("cache", {})
    ds = cache.get("dataset", {})
    teachers = []
    for kind, label in (("lidar_teacher", "LiDAR teacher"), ("image_teacher", "image teacher")):
        t = cache.get(kind)
        if t:
            sha = t.get("checkpoint_sha256")
            teachers.append(f"{label} {t.get('name')} ({'checkpoint sha256 ' + sha[:12] if sha else 'random init'})")
    sw = provenance.get("software", {})
    commit = sw.get("git_commit")
    return (f"distilled from: {', '.join(teachers) if teachers else 'no teacher (GT only)'}; "
            f"cache {provenance.get('cache_url')} ({ds.get('version')} {ds.get('split')}, {cache.get('num_samples')} "
            f"samples); x3kd {sw.get('x3kd')}{' (git ' + commit[:10] + ')' if commit else ''}")


def trained_on(provenance: dict[str, Any] | None) -> tuple[str, str] | None:
    """(version, split) of the cache a student was trained on, when its checkpoint recorded it."""
    dataset = (provenance or {}).get("cache", {}).get("dataset", {})
    if dataset.get("version") and dataset.get("split"):
        return dataset["version"], dataset["split"]
    return None


def check_eval_dataroot(provenance: dict[str, Any] | None, dataroot: str | Path, version: str,
                        allow_other: bool) -> None:
    """Evaluating on a dataroot whose tables differ from the training dataroot's (same version) is
    refused unless asked for: the same scene names over other data give meaningless scores."""
    if not provenance or allow_other:
        return
    trained = provenance.get("dataroot_tables_sha256")
    if not trained or provenance.get("cache", {}).get("dataset", {}).get("version") != version:
        return
    if tables_fingerprint(dataroot, version) != trained:
        raise UserInputError(f"--dataroot {dataroot}: its {version} tables differ from those of the dataroot the "
                             f"student was trained with ({provenance.get('dataroot')}); pass --other-dataroot to "
                             "evaluate on it anyway")
