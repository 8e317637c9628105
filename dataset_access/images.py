"""Camera images as numpy arrays: the one image reader of the project."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cache_schema.errors import UserInputError


def read_rgb(path: str | Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """One camera image as a writable (H, W, 3) uint8 RGB array; the one image reader of the project
    (export, teacher fitting, training, evaluation and pictures all come here). A missing, unreadable
    or (with `expected_hw`) wrongly sized file is a `UserInputError` naming it. A Waymo reference
    (`file.parquet#frame=..&camera=..`) is read from inside its Parquet file."""
    if ".parquet#frame=" in str(path):
        from dataset_access.waymo.images import read_referenced_rgb

        rgb = read_referenced_rgb(path)
        if expected_hw is not None and rgb.shape[:2] != tuple(expected_hw):
            raise UserInputError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}, its calibration says "
                                 f"{expected_hw[1]}x{expected_hw[0]}")
        return rgb
    try:
        with Image.open(path) as im:
            # np.array copies (torch warns on read-only arrays); convert only what is not RGB already,
            # since PIL's convert copies a full-size RGB image once more
            rgb = np.array(im if im.mode == "RGB" else im.convert("RGB"))
    except FileNotFoundError:
        raise UserInputError(f"{path}: camera image not found (is --dataroot the one the cache was made from?)") \
            from None
    except OSError as e:
        raise UserInputError(f"{path}: unreadable image ({e})") from None
    if expected_hw is not None and rgb.shape[:2] != tuple(expected_hw):
        raise UserInputError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}, its calibration says "
                             f"{expected_hw[1]}x{expected_hw[0]}")
    return rgb
