"""Kernels of the estimation task (SOC summary, group temperatures, balancing, current
limits) against plain numpy twins: the numpy code each kernel replaced."""

from __future__ import annotations

import math

import numpy as np

from bms.config import CurrentLimitConfig
from bms.firmware import kernels as K
from bms.firmware.limits import CurrentLimits

# ----------------------------------------------------------------------------- twins


def twin_group_temps(t, sensor, lo_c, hi_c):
    valid = np.isfinite(t) & (t > lo_c) & (t < hi_c)
    if not valid.all():
        t = np.where(valid, t, float(np.median(t[valid])) if valid.any() else 25.0)
    return t[sensor], int((~valid).sum())


def twin_bled_charge(v, temp_c, mask, resistor_ohm, duty, dt_s):
    ok = np.isfinite(v)
    if not ok.all():
        v = np.where(ok, v, float(np.median(v[ok])) if ok.any() else 0.0)
    bled = np.where(mask, v / resistor_ohm * duty * dt_s, 0.0)
    t_max = float(temp_c.max()) if temp_c.size else -math.inf
    return bled, int((~ok).sum()), (float(v.min()) if ok.all() else None), t_max


def twin_soc_excess(soc, capacity_as, threshold, remaining_as):
    remaining_as = remaining_as.copy()
    if not np.any(remaining_as > 0.0):
        excess = soc - soc.min()
        if float(excess.max()) > threshold:
            remaining_as[:] = excess * capacity_as
        else:
            remaining_as[:] = 0.0
    return remaining_as, remaining_as > 0.0, remaining_as.copy()


def twin_current_limits(c: CurrentLimitConfig, temp_c, cell_v, soc):
    """Per-cell limits as the numpy implementation computed them."""
    t = temp_c[np.isfinite(temp_c)]
    t_lo, t_hi = (float(t.min()), float(t.max())) if t.size else (25.0, 25.0)

    def over_temp(xs, ys):
        return float(min(np.interp(t_lo, xs, ys), np.interp(t_hi, xs, ys)))

    def taper(v, start, end):
        return min(max((v - end) / (start - end), 0.0), 1.0)

    chg = min(
        over_temp(c.charge_temp_c, c.charge_vs_temp_a),
        float(np.interp(float(soc.max()), c.charge_soc, c.charge_vs_soc_a)),
    )
    dis = min(
        over_temp(c.discharge_temp_c, c.discharge_vs_temp_a),
        float(np.interp(float(soc.min()), c.discharge_soc, c.discharge_vs_soc_a)),
    )
    v = cell_v[np.isfinite(cell_v)]
    if v.size == 0:
        return 0.0, 0.0
    return chg * taper(float(v.max()), *c.charge_taper_v), dis * taper(
        float(v.min()), *c.discharge_taper_v
    )


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


# ----------------------------------------------------------------------------- tests


def test_interp_is_numpys_interp_bit_for_bit(rng) -> None:
    for _ in range(500):
        n = int(rng.integers(2, 12))
        uniform = rng.random() < 0.5
        xp = np.linspace(0.0, 1.0, n) if uniform else np.unique(rng.uniform(-30, 70, n))
        if xp.size < 2:
            continue
        fp = np.round(rng.uniform(0, 300, xp.size), 0)  # equal neighbours happen
        if rng.random() < 0.3:
            fp[1:] = fp[0]
        xs = [*rng.uniform(xp[0] - 5, xp[-1] + 5, 8), *xp, math.nan, math.inf, -math.inf]
        for x in xs:
            assert _same(K.interp(float(x), xp, fp), float(np.interp(x, xp, fp))), (x, xp, fp)


def test_group_temps_kernel_matches_twin(rng) -> None:
    for _ in range(300):
        n_t = int(rng.integers(1, 12))
        t = rng.uniform(-20, 60, n_t)
        t[rng.random(n_t) < 0.15] = np.nan
        t[rng.random(n_t) < 0.1] = 150.0  # open or shorted sensor
        sensor = rng.integers(0, n_t, int(rng.integers(1, 30))).astype(np.int64)
        out = np.empty(sensor.size)
        bad = K.group_temps_kernel(t, sensor, -39.0, 125.0, np.empty(n_t), out)
        want, want_bad = twin_group_temps(t, sensor, -39.0, 125.0)
        np.testing.assert_allclose(out, want, rtol=0, atol=0)
        assert bad == want_bad


def test_soc_summary_kernel_matches_numpy(rng) -> None:
    grid = np.linspace(0.0, 1.0, 101)
    energy = np.concatenate(([0.0], np.cumsum(rng.uniform(3.0, 3.4, 100) * 0.01)))
    for _ in range(200):
        soc = rng.uniform(-0.05, 1.05, int(rng.integers(1, 300)))
        lo, hi, mean, e = K.soc_summary_kernel(soc, grid, energy)
        assert (lo, hi) == (soc.min(), soc.max())
        np.testing.assert_allclose(mean, soc.mean(), rtol=1e-13)
        want = np.interp(np.clip(soc, 0.0, 1.0), grid, energy).sum()
        np.testing.assert_allclose(e, want, rtol=1e-13)
    soc[0] = np.nan
    assert all(math.isnan(x) for x in K.soc_summary_kernel(soc, grid, energy))


def test_bled_charge_kernel_matches_twin(rng) -> None:
    for _ in range(300):
        n = int(rng.integers(1, 40))
        v = rng.uniform(2.8, 3.6, n)
        v[rng.random(n) < 0.1] = np.nan
        v[rng.random(n) < 0.05] = np.inf
        temp = rng.uniform(10, 50, int(rng.integers(0, 6)))
        if temp.size and rng.random() < 0.2:
            temp[0] = np.nan
        mask = rng.random(n) < 0.5
        bled = np.empty(n)
        n_bad, v_min, t_max = K.bled_charge_kernel(v, temp, mask, 33.0, 0.9, 0.1, np.empty(n), bled)
        want, want_bad, want_min, want_t = twin_bled_charge(v, temp, mask, 33.0, 0.9, 0.1)
        np.testing.assert_allclose(bled, want, rtol=0, atol=0)
        assert n_bad == want_bad
        if want_min is not None:
            assert v_min == want_min
        assert _same(t_max, want_t)


def test_soc_excess_kernel_matches_twin(rng) -> None:
    for _ in range(300):
        n = int(rng.integers(1, 40))
        soc = rng.uniform(0.4, 0.6, n)
        if rng.random() < 0.1:
            soc[int(rng.integers(n))] = np.nan
        remaining = np.where(rng.random(n) < 0.5, rng.uniform(-5, 50, n), 0.0)
        if rng.random() < 0.5:
            remaining[:] = 0.0
        threshold = float(rng.choice([0.01, 0.05, 0.5]))
        want = twin_soc_excess(soc, 1e6, threshold, remaining)
        demand = np.zeros(n, dtype=np.bool_)
        priority = np.zeros(n)
        K.soc_excess_kernel(soc, 1e6, threshold, remaining, demand, priority)
        np.testing.assert_allclose(remaining, want[0], rtol=0, atol=0)
        assert demand.tolist() == want[1].tolist()
        np.testing.assert_allclose(priority, want[2], rtol=0, atol=0)


def test_current_limits_kernel_matches_twin(rng) -> None:
    cfg = CurrentLimitConfig()
    limits = CurrentLimits(cfg, 1)
    for _ in range(500):
        temp = np.round(rng.uniform(-35, 70, int(rng.integers(0, 8))), 1)
        temp[rng.random(temp.size) < 0.15] = np.nan
        v = rng.uniform(2.4, 3.7, int(rng.integers(1, 20)))
        v[rng.random(v.size) < 0.1] = np.nan
        soc = rng.uniform(-0.05, 1.05, int(rng.integers(1, 20)))
        if rng.random() < 0.05:
            soc[0] = np.nan
        got = K.current_limits_kernel(
            temp, v, soc, limits._curve_x, limits._curve_y, limits._curve_n, limits._taper_v
        )
        want = twin_current_limits(cfg, temp, v, soc)
        assert all(_same(a, b) for a, b in zip(got, want, strict=True)), (got, want)
