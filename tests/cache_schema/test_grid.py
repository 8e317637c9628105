"""BevGrid's cell arithmetic, the one used by targets, augmentation, decoding, view transform and export."""
import numpy as np
import pytest

from cache_schema.grid import BevGrid

GRID = BevGrid((-51.2, -40.0, -5.0, 51.2, 40.0, 3.0), (0.2, 0.2, 8.0), 4)


def test_shape_and_cell_centres():
    assert GRID.shape == (100, 128) and GRID.cell_size == pytest.approx((0.8, 0.8))
    xs, ys = GRID.cell_centres()
    assert xs.shape == (128,) and ys.shape == (100,)
    assert xs[0] == pytest.approx(-50.8) and ys[-1] == pytest.approx(39.6)
    # a centre lies in the middle of its own cell
    cols, rows = GRID.cell_coords(xs, ys[: len(ys)])
    np.testing.assert_allclose(cols, np.arange(128) + 0.5, atol=1e-9)
    np.testing.assert_allclose(rows, np.arange(100) + 0.5, atol=1e-9)


def test_cell_and_metric_coordinates_are_inverse():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-60, 60, 100), rng.uniform(-50, 50, 100)
    col, row = GRID.cell_coords(x, y)
    back = GRID.metric_coords(col, row)
    np.testing.assert_allclose(back[0], x, atol=1e-9)
    np.testing.assert_allclose(back[1], y, atol=1e-9)
    # floats work as well as arrays (torch tensors too: plain arithmetic)
    assert GRID.cell_coords(-51.2, -40.0) == pytest.approx((0.0, 0.0))


def test_contains_is_half_open():
    x = np.array([-51.2, 51.2 - 1e-6, 51.2, 0.0, 0.0])
    y = np.array([0.0, 0.0, 0.0, -40.0, 40.0])
    assert GRID.contains(x, y).tolist() == [True, True, False, True, False]
