"""State of health as the emulated BMS estimates it: capacity and resistance per group.

- Resistance: at a current step (|dI| >= ``step_a`` between two 10 ms samples)
  each group's voltage change gives R = -dV / dI, nearly the ohmic R0 over
  10 ms; divided by the cell model's R0 at the group's SOC and temperature it
  is a resistance factor (1.0 = as new), averaged over steps (EMA).
- Capacity: between two rest-OCV points of a group (rest of ``rest_time_s``,
  where its OCV is steep enough to read the SOC), the charge counted in
  between over the SOC difference, when that difference is at least
  ``min_dsoc``. A rest on the flat part leaves the older point in place.

Both are reported per series group and can be stored in persistent memory.
Sign convention: positive current = discharge.
"""

from __future__ import annotations

import numpy as np

from bms.config import SocConfig
from bms.firmware.soc import CellModel
from bms.plant import layout as L
from bms.plant.sensors import Measurement

__all__ = ["SohEstimator"]


# resistance over the model's that one current step may report (outside: a measurement
# artefact, not ageing)
PLAUSIBLE_FACTOR = (0.2, 10.0)


class SohEstimator:
    """Capacity (Ah) and resistance factor per group, from measurements only."""

    def __init__(
        self,
        model: CellModel,
        n_groups: int,
        soc_cfg: SocConfig,
        step_a: float = 50.0,
        min_dsoc: float = 0.5,
        smoothing: float = 0.2,
    ):
        self.model = model
        self.soc_cfg = soc_cfg
        self.step_a = step_a
        self.min_dsoc = min_dsoc
        self.smoothing = smoothing
        self.capacity_ah = np.full(n_groups, model.capacity_as / 3600.0)
        self.resistance_factor = np.ones(n_groups)
        self.resistance_samples = 0
        self._samples = np.zeros(n_groups, dtype=np.int64)
        self._prev: tuple[float, np.ndarray] | None = None
        self._throughput_as = np.zeros(n_groups)
        self._rest_s = 0.0
        self._anchor = np.full(n_groups, np.nan)  # SOC at each group's last rest point
        self._anchored = False
        self._last_dir = 0.0

    def update(self, m: Measurement, dt_s: float, soc: np.ndarray, group_temps: np.ndarray) -> None:
        i = m.current_a
        v = m.cell_voltage_v
        if self._prev is not None:
            i0, v0 = self._prev
            di = i - i0
            if abs(di) >= self.step_a:
                r = -(v - v0) / di
                r_model = self._r0(soc, group_temps)
                factor = r / r_model
                # a voltage and a current that were not sampled together (cell monitoring
                # units and shunt on their own clocks) give steps that no cell can have:
                # keep only plausible ones, group by group
                ok = np.isfinite(factor) & (factor > PLAUSIBLE_FACTOR[0])
                ok &= factor < PLAUSIBLE_FACTOR[1]
                if ok.any():
                    a = self.smoothing if self.resistance_samples else 1.0
                    rf = self.resistance_factor
                    rf[ok] += a * (factor[ok] - rf[ok])
                    self.resistance_samples += 1
        self._prev = (i, v.copy())
        self._throughput_as += i * dt_s
        if abs(i) >= self.soc_cfg.rest_current_a:
            self._rest_s = 0.0
            self._anchored = False
            self._last_dir = -1.0 if i > 0 else 1.0
            return
        self._rest_s += dt_s
        if self._anchored or self._rest_s < self.soc_cfg.rest_time_s:
            return
        self._anchored = True
        for g in range(v.size):
            z, slope = self.model.soc_from_ocv(float(v[g]), float(group_temps[g]), self._last_dir)
            if slope < self.soc_cfg.min_ocv_slope_v:
                continue  # flat OCV: keep the older point and go on counting
            dz = self._anchor[g] - z
            if np.isfinite(dz) and abs(dz) >= self.min_dsoc:
                q = self._throughput_as[g] / dz / 3600.0
                n = self._samples[g]
                a = self.smoothing if n else 1.0
                self.capacity_ah[g] += a * (q - self.capacity_ah[g])
                self._samples[g] = n + 1
            self._anchor[g] = z
            self._throughput_as[g] = 0.0

    @property
    def capacity_samples(self) -> int:
        """Capacity estimates made so far (the most of any group)."""
        return int(self._samples.max())

    def _r0(self, soc: np.ndarray, temps: np.ndarray) -> np.ndarray:
        """The cell model's R0 of every group at its SOC and temperature (bilinear), ohm;
        NaN for a group whose SOC or temperature is not a number (its step is then not
        used)."""
        g, base = self.model.grid, self.model.tables.base
        unknown = ~(np.isfinite(soc) & np.isfinite(temps))
        any_unknown = bool(unknown.any())
        if any_unknown:
            soc = np.where(unknown, 0.5, soc)
            temps = np.where(unknown, 25.0, temps)
        fi = (np.clip(soc, 0.0, 1.0) - g["soc0"]) * g["soc_inv"]
        i = np.clip(np.floor(fi), 0, g["nsoc"] - 2).astype(np.int64)
        wi = np.clip(fi - i, 0.0, 1.0)
        ft = (temps - g["t0"]) * g["t_inv"]
        j = np.clip(np.floor(ft), 0, g["nt"] - 2).astype(np.int64)
        wj = np.clip(ft - j, 0.0, 1.0)
        r = base[:, :, L.T_R0]
        r0 = (
            (1 - wi) * (1 - wj) * r[i, j]
            + wi * (1 - wj) * r[i + 1, j]
            + (1 - wi) * wj * r[i, j + 1]
            + wi * wj * r[i + 1, j + 1]
        )
        r0 = r0 / self.model.n_parallel
        if any_unknown:
            r0[unknown] = np.nan
        return r0
