"""Charge and discharge current limits of the emulated BMS (the 100 ms task).

Each limit is the smaller of two derating tables, over the temperature (the
coldest sensor for the low side, the hottest for the high side: the table is
evaluated at both and the smaller value wins) and over the estimated SOC
(the fullest group for charge, the emptiest for discharge), times a taper
that falls linearly to zero as the highest (charge) or lowest (discharge)
measured cell voltage crosses its taper window. Tables hold the current per
cell; the pack limit is P times it. Results in A, both positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bms.config import CurrentLimitConfig
from bms.plant.sensors import Measurement

__all__ = ["CurrentLimits", "Limits"]


@dataclass(frozen=True)
class Limits:
    charge_a: float
    discharge_a: float


def _taper(v: float, start: float, end: float) -> float:
    """1 before ``start``, 0 past ``end``, linear between (either direction)."""
    f = (v - end) / (start - end)
    return min(max(f, 0.0), 1.0)


class CurrentLimits:
    """Current limits from measurements and the SOC estimate."""

    def __init__(self, cfg: CurrentLimitConfig, n_parallel: int):
        self.cfg = cfg
        self.n_parallel = n_parallel

    def update(self, m: Measurement, soc: np.ndarray) -> Limits:
        c = self.cfg
        t = m.temp_c[np.isfinite(m.temp_c)]
        t_lo, t_hi = (float(t.min()), float(t.max())) if t.size else (25.0, 25.0)

        def over_temp(xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
            return float(min(np.interp(t_lo, xs, ys), np.interp(t_hi, xs, ys)))

        chg = min(
            over_temp(c.charge_temp_c, c.charge_vs_temp_a),
            float(np.interp(float(soc.max()), c.charge_soc, c.charge_vs_soc_a)),
        )
        dis = min(
            over_temp(c.discharge_temp_c, c.discharge_vs_temp_a),
            float(np.interp(float(soc.min()), c.discharge_soc, c.discharge_vs_soc_a)),
        )
        v = m.cell_voltage_v[np.isfinite(m.cell_voltage_v)]
        if v.size == 0:  # no valid cell voltage: no current allowed
            return Limits(0.0, 0.0)
        chg *= _taper(float(v.max()), *c.charge_taper_v)
        dis *= _taper(float(v.min()), *c.discharge_taper_v)
        return Limits(chg * self.n_parallel, dis * self.n_parallel)
