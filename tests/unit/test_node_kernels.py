"""Kernels of the CAN nodes against numpy."""

from __future__ import annotations

import numpy as np

from bms.canbus.nodes import extremes_kernel, fresh_copy_kernel


def test_extremes_kernel_equals_numpy_nan_functions(rng) -> None:
    for _ in range(300):
        n = int(rng.integers(1, 60))
        x = np.round(rng.normal(3.3, 0.02, n), 3)  # rounded: ties happen
        x[rng.random(n) < 0.2] = np.nan
        x[rng.random(n) < 0.05] = np.inf
        out = np.zeros(3)
        lo, hi, count = extremes_kernel(x, out)
        finite = np.where(np.isfinite(x), x, np.nan)
        assert count == np.isfinite(x).sum()
        if count == 0:
            assert (lo, hi) == (-1, -1)
            continue
        assert lo == np.nanargmin(finite) and hi == np.nanargmax(finite)
        assert out[0] == np.nanmin(finite) and out[1] == np.nanmax(finite)
        np.testing.assert_allclose(out[2], np.nanmean(finite), rtol=1e-12)


def test_fresh_copy_kernel_equals_numpy_masking(rng) -> None:
    for _ in range(300):
        n = int(rng.integers(0, 40))
        values = rng.normal(3.3, 0.02, n)
        rx_time_s = rng.uniform(0.0, 1.0, n)
        rx_time_s[rng.random(n) < 0.1] = -np.inf  # never received
        oldest_s = float(rng.uniform(0.0, 1.0))
        out = np.zeros(n)
        n_stale = fresh_copy_kernel(values, rx_time_s, oldest_s, out)
        want = np.where(rx_time_s < oldest_s, np.nan, values)
        np.testing.assert_array_equal(out, want)
        assert n_stale == int((rx_time_s < oldest_s).sum())
