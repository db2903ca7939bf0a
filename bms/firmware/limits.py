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
from bms.firmware import kernels as K
from bms.plant.sensors import Measurement

__all__ = ["CurrentLimits", "Limits"]


@dataclass(frozen=True)
class Limits:
    charge_a: float
    discharge_a: float


class CurrentLimits:
    """Current limits from measurements and the SOC estimate."""

    def __init__(self, cfg: CurrentLimitConfig, n_parallel: int):
        self.cfg = cfg
        self.n_parallel = n_parallel
        # the four curves as rows of one table (kernel layout, K.LC_*)
        curves = {
            K.LC_CHARGE_TEMP: (cfg.charge_temp_c, cfg.charge_vs_temp_a),
            K.LC_CHARGE_SOC: (cfg.charge_soc, cfg.charge_vs_soc_a),
            K.LC_DISCHARGE_TEMP: (cfg.discharge_temp_c, cfg.discharge_vs_temp_a),
            K.LC_DISCHARGE_SOC: (cfg.discharge_soc, cfg.discharge_vs_soc_a),
        }
        width = max(len(xs) for xs, _ in curves.values())
        self._curve_x = np.zeros((K.NLC, width))
        self._curve_y = np.zeros((K.NLC, width))
        self._curve_n = np.zeros(K.NLC, dtype=np.int64)
        for k, (xs, ys) in curves.items():
            self._curve_x[k, : len(xs)] = xs
            self._curve_y[k, : len(ys)] = ys
            self._curve_n[k] = len(xs)
        self._taper_v = np.array([*cfg.charge_taper_v, *cfg.discharge_taper_v], dtype=float)

    def update(self, m: Measurement, soc: np.ndarray) -> Limits:
        chg, dis = K.current_limits_kernel(
            m.temp_c,
            m.cell_voltage_v,
            soc,
            self._curve_x,
            self._curve_y,
            self._curve_n,
            self._taper_v,
        )
        return Limits(chg * self.n_parallel, dis * self.n_parallel)
