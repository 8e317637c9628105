"""Where a synthetic dataset is built: beside its target, renamed into place only when complete."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cache_schema.errors import UserInputError


@contextmanager
def building(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside `out_dir` (which must not exist or be empty) to write a dataset into;
    on success it becomes `out_dir`, on any failure or interrupt it is removed: an interrupted generator
    never leaves a dataset that looks complete."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"{out}: output exists and is not an empty directory")
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
