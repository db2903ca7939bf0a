"""Kernels of the CAN nodes against numpy."""

from __future__ import annotations

import numpy as np

from bms.canbus.nodes import extremes_kernel, fresh_copy_kernel, fresh_inputs_kernel


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


def test_fresh_inputs_kernel_equals_numpy_masking_of_both_arrays(rng) -> None:
    for _ in range(100):
        arrays = []
        for n in (int(rng.integers(0, 40)), int(rng.integers(0, 12))):
            rx_time_s = rng.uniform(0.0, 1.0, n)
            rx_time_s[rng.random(n) < 0.1] = -np.inf
            arrays.append((rng.normal(3.3, 0.02, n), rx_time_s, float(rng.uniform(0, 1))))
        (v, vt, v_old), (t, tt, t_old) = arrays
        v_out, t_out = np.zeros(v.size), np.zeros(t.size)
        n_stale = fresh_inputs_kernel(v, vt, v_old, v_out, t, tt, t_old, t_out)
        np.testing.assert_array_equal(v_out, np.where(vt < v_old, np.nan, v))
        np.testing.assert_array_equal(t_out, np.where(tt < t_old, np.nan, t))
        assert n_stale == int((vt < v_old).sum() + (tt < t_old).sum())
