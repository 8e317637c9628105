"""Camera images inside a Waymo v2 `camera_image` file, read by reference (see `samples.image_reference`)."""
from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from cache_schema.errors import UserInputError
from dataset_access.waymo.samples import parse_reference
from dataset_access.waymo.schema import KEY_CAMERA, KEY_TIMESTAMP, column


def read_referenced_rgb(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the referenced camera image, padded with black rows at the bottom to the
    reference's `height` (the frame's tallest camera)."""
    file, fields = parse_reference(path)
    if not file.is_file():
        raise UserInputError(f"{file}: camera image file not found (is --dataroot the one the cache was made from?)")
    try:
        table = pq.read_table(file, columns=[column("camera_image", "image")],
                              filters=[(KEY_TIMESTAMP, "==", fields["frame"]), (KEY_CAMERA, "==", fields["camera"])])
    except (pa.ArrowInvalid, OSError, KeyError) as e:
        raise UserInputError(f"{file}: not a readable camera_image Parquet file ({e})") from None
    if table.num_rows != 1:
        raise UserInputError(f"{file}: {table.num_rows} images of camera {fields['camera']} in frame "
                             f"{fields['frame']} (expected 1)")
    try:
        with Image.open(io.BytesIO(table.column(0)[0].as_py())) as im:
            rgb = np.array(im if im.mode == "RGB" else im.convert("RGB"))
    except OSError as e:
        raise UserInputError(f"{path}: unreadable JPEG ({e})") from None
    height = fields.get("height", rgb.shape[0])
    if rgb.shape[0] < height:
        rgb = np.concatenate([rgb, np.zeros((height - rgb.shape[0], *rgb.shape[1:]), np.uint8)], axis=0)
    return rgb
