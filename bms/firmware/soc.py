"""State of charge and energy, as the emulated BMS estimates them.

Estimators are chosen by name (``SOC_ESTIMATORS``) and implement one method,
``update(measurement, dt_s)``; they see only sensor readings (a
:class:`bms.plant.Measurement`), never the plant. Every series group of P
parallel cells is one estimated "cell" of P times the capacity.

- ``coulomb``: charge counting on the measured current, recalibrated from the
  rest OCV after ``rest_time_s`` without current, on the OCV branch of the last
  current direction, and only where the OCV is steep enough
  (``min_ocv_slope_v`` per unit SOC) for a 2 mV error to matter little: on the
  flat LFP plateau the OCV says almost nothing about SOC.
- ``ekf``: an extended Kalman filter per group with states SOC, two RC
  voltages and the hysteresis state; it counts charge where the OCV is flat
  and corrects where it is not.

Pack figures (:class:`PackSoc`): min, max and mean of the groups, and the SOC
shown to the driver, ``min / (min + 1 - max)``: 0 % when the emptiest group
is empty, 100 % when the fullest is full, the mean when all agree.
SOE is the energy the groups hold above 0 % SOC at 25 degC, from the OCV.
Sign convention: positive current = discharge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bms.chemistry import Chemistry
from bms.config import SocConfig
from bms.errors import ConfigError
from bms.firmware import kernels as K
from bms.plant import layout as L
from bms.plant.sensors import Measurement
from bms.plant.tables import KernelTables

__all__ = [
    "SOC_ESTIMATORS",
    "CellModel",
    "CoulombCounter",
    "ExtendedKalmanFilter",
    "PackSoc",
    "SocEstimator",
    "make_estimator",
]


class CellModel:
    """The firmware's cell model: the chemistry with nominal parameters, per group."""

    def __init__(self, chem: Chemistry, n_parallel: int):
        self.chem = chem
        self.n_parallel = n_parallel
        self.tables = KernelTables(chem)
        self.grid = self.tables.grid_scalars()
        self.capacity_as = chem.capacity_ah * 3600.0 * n_parallel  # at 25 degC
        self._tabs: dict[float, np.ndarray] = {}
        t25 = np.abs(self.tables.temp_c - 25.0).argmin()
        ocv25 = self.tables.base[:, t25, L.T_OCV]
        soc = self.tables.soc
        # cumulative energy per unit capacity, V * (unit SOC), at 25 degC, over the SOC grid
        self.energy_grid = np.concatenate(
            ([0.0], np.cumsum(0.5 * (ocv25[1:] + ocv25[:-1]) * np.diff(soc)))
        )

    def tab(self, dt_s: float) -> np.ndarray:
        tab = self._tabs.get(dt_s)
        if tab is None:
            if len(self._tabs) >= 8:
                del self._tabs[next(iter(self._tabs))]
            tab = self._tabs[dt_s] = self.tables.for_dt(dt_s)
        return tab

    def _curve(self, temp_c: float, branch: float) -> tuple[np.ndarray, np.ndarray]:
        """OCV over the SOC grid at ``temp_c`` on branch h (-1 discharge, +1 charge)."""
        t = self.tables.temp_c
        j = int(np.clip(np.searchsorted(t, temp_c) - 1, 0, t.size - 2))
        w = float(np.clip((temp_c - t[j]) / (t[j + 1] - t[j]), 0.0, 1.0))
        base = self.tables.base
        ocv = (1 - w) * base[:, j, L.T_OCV] + w * base[:, j + 1, L.T_OCV]
        hyst = (1 - w) * base[:, j, L.T_HYST] + w * base[:, j + 1, L.T_HYST]
        return self.tables.soc, ocv + branch * hyst

    def soc_from_ocv(self, v: float, temp_c: float, branch: float = 0.0) -> tuple[float, float]:
        """(SOC, dOCV/dSOC there) for a rest voltage, clamped to [0, 1]."""
        soc, curve = self._curve(temp_c, branch)
        z = float(np.interp(v, curve, soc))
        k = int(np.clip(np.searchsorted(soc, z) - 1, 0, soc.size - 2))
        slope = float((curve[k + 1] - curve[k]) / (soc[k + 1] - soc[k]))
        return z, slope

    def energy_wh(self, soc: np.ndarray) -> float:
        """Energy above 0 % SOC held by groups at ``soc``, Wh (OCV at 25 degC)."""
        e = np.interp(np.clip(soc, 0.0, 1.0), self.tables.soc, self.energy_grid)
        return float(e.sum() * self.capacity_as / 3600.0)


@dataclass(frozen=True)
class PackSoc:
    """Pack-level SOC figures (dimensionless, 0..1) and SOE (Wh)."""

    min: float
    max: float
    mean: float
    display: float
    soe_wh: float

    @classmethod
    def of(cls, soc: np.ndarray, model: CellModel) -> PackSoc:
        lo, hi, mean, energy = K.soc_summary_kernel(soc, model.tables.soc, model.energy_grid)
        den = lo + 1.0 - hi
        display = lo / den if den > 0 else 0.0
        soe_wh = energy * model.capacity_as / 3600.0
        return cls(lo, hi, mean, min(max(display, 0.0), 1.0), soe_wh)


class SocEstimator:
    """Base class: per-group SOC from measurements. Subclasses implement ``update``."""

    name = ""

    def __init__(
        self, cfg: SocConfig, model: CellModel, group_of_sensor: np.ndarray, n_groups: int
    ):
        self.cfg = cfg
        self.model = model
        self.n_groups = n_groups
        self.soc = np.full(n_groups, np.nan)
        # each group reads the temperature sensor nearest to it (along the string)
        sensor_groups = np.asarray(group_of_sensor, dtype=np.int64)
        order = np.argsort(sensor_groups)
        pos = np.searchsorted(sensor_groups[order], np.arange(n_groups))
        lo = order[np.clip(pos - 1, 0, order.size - 1)]
        hi = order[np.clip(pos, 0, order.size - 1)]
        g = np.arange(n_groups)
        self._sensor = np.ascontiguousarray(
            np.where(np.abs(sensor_groups[lo] - g) <= np.abs(sensor_groups[hi] - g), lo, hi),
            dtype=np.int64,
        )
        self._temp_scratch = np.empty(sensor_groups.size)

    def group_temps(self, m: Measurement) -> np.ndarray:
        """Each group's temperature from its nearest sensor; an invalid reading (not finite,
        or an open or shorted sensor outside -39..125 degC) is replaced by the median of
        the valid ones (25 degC when none is valid)."""
        out = np.empty(self.n_groups)
        K.group_temps_kernel(m.temp_c, self._sensor, -39.0, 125.0, self._temp_scratch, out)
        return out

    def initialise(self, m: Measurement, soc: np.ndarray | None = None) -> None:
        """Start from given SOCs (from persistent memory) or from the rest OCV. A group
        without a valid reading at that moment (a frame lost at power-on) starts from the
        median of the others, 50 % when no group has one: a number the estimator then
        corrects, never a NaN it would carry for ever."""
        if soc is not None and np.all(np.isfinite(soc)):
            self.soc[:] = soc
            return
        temps = self.group_temps(m)
        for g in range(self.n_groups):
            self.soc[g] = self.model.soc_from_ocv(float(m.cell_voltage_v[g]), float(temps[g]))[0]
        known = np.isfinite(self.soc)
        if not known.all():
            self.soc[~known] = float(np.median(self.soc[known])) if known.any() else 0.5

    def update(
        self, m: Measurement, dt_s: float, temps: np.ndarray | None = None
    ) -> None:  # pragma: no cover - abstract
        """Move the estimate on by ``dt_s`` with the sample ``m``; ``temps``: its
        :meth:`group_temps`, when the caller has them already."""
        raise NotImplementedError

    def account_bleed(self, bled_as: np.ndarray) -> None:
        """Take the charge the balancing resistors drew (A*s per group) off the estimate:
        the pack current sensor does not see it."""
        self.soc -= bled_as / self.model.capacity_as

    def pack(self) -> PackSoc:
        return PackSoc.of(self.soc, self.model)


class CoulombCounter(SocEstimator):
    """Charge counting with OCV recalibration after a rest (see module docstring)."""

    name = "coulomb"

    def __init__(self, *args: object, **kw: object):
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self._q = np.full(self.n_groups, self.model.capacity_as)
        self._rest_s = 0.0
        self._recalibrated = False
        self._last_dir = 0.0  # +1 after charge, -1 after discharge
        self.recalibrations = 0

    def update(self, m: Measurement, dt_s: float, temps: np.ndarray | None = None) -> None:
        i = m.current_a
        K.coulomb_kernel(self.soc, i, dt_s, self._q, self.model.chem.coulombic_efficiency)
        if abs(i) >= self.cfg.rest_current_a:
            self._rest_s = 0.0
            self._recalibrated = False
            self._last_dir = -1.0 if i > 0 else 1.0
            return
        self._rest_s += dt_s
        if self._recalibrated or self._rest_s < self.cfg.rest_time_s:
            return
        self._recalibrated = True
        if temps is None:
            temps = self.group_temps(m)
        for g in range(self.n_groups):
            z, slope = self.model.soc_from_ocv(
                float(m.cell_voltage_v[g]), float(temps[g]), self._last_dir
            )
            if slope >= self.cfg.min_ocv_slope_v:
                self.soc[g] = z
                self.recalibrations += 1


class ExtendedKalmanFilter(SocEstimator):
    """Per-group EKF over SOC, RC voltages and hysteresis (see module docstring)."""

    name = "ekf"

    def __init__(self, *args: object, **kw: object):
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        model, cfg = self.model, self.cfg
        chem = model.chem
        n = self.n_groups
        self.xs = np.zeros((n, K.NE))
        self.cov = np.zeros((n, K.NE, K.NE))
        self.innovation_v = np.zeros(n)
        g = model.grid
        prm = np.zeros(K.NPRM)
        prm[K.K_S0], prm[K.K_SINV], prm[K.K_NS] = g["soc0"], g["soc_inv"], g["nsoc"]
        prm[K.K_T0], prm[K.K_TINV], prm[K.K_NT] = g["t0"], g["t_inv"], g["nt"]
        prm[K.K_Q_AS] = model.capacity_as
        prm[K.K_RSCALE] = 1.0 / model.n_parallel
        prm[K.K_GAMMA] = chem.hysteresis_gamma
        prm[K.K_ETA] = chem.coulombic_efficiency
        prm[K.K_SIG_V2] = cfg.ekf_voltage_sigma_v**2
        prm[K.K_QZ] = cfg.ekf_soc_sigma_per_s**2
        prm[K.K_QV] = (1e-4) ** 2
        prm[K.K_QH] = (1e-3) ** 2
        prm[K.K_SIG_I2] = cfg.current_sigma_a**2
        prm[K.K_RC] = chem.rc_pairs
        prm[K.K_HYST] = 1.0
        prm[K.K_RREL] = cfg.ekf_resistance_error
        self.prm = prm

    def initialise(self, m: Measurement, soc: np.ndarray | None = None) -> None:
        """From a stored SOC (trusted to ``ekf_stored_soc_sigma``) or from the rest OCV
        (trusted to ``ekf_initial_soc_sigma``: on the LFP plateau, hardly at all)."""
        known = soc is not None and bool(np.all(np.isfinite(soc)))
        super().initialise(m, soc)
        self.xs[:] = 0.0
        self.xs[:, K.E_SOC] = self.soc
        self.cov[:] = 0.0
        sigma = self.cfg.ekf_stored_soc_sigma if known else self.cfg.ekf_initial_soc_sigma
        self.cov[:, K.E_SOC, K.E_SOC] = sigma**2
        self.cov[:, K.E_V1, K.E_V1] = 0.01**2
        self.cov[:, K.E_V2, K.E_V2] = 0.01**2
        self.cov[:, K.E_H, K.E_H] = 0.5**2

    def update(self, m: Measurement, dt_s: float, temps: np.ndarray | None = None) -> None:
        K.ekf_kernel(
            self.xs,
            self.cov,
            self.model.tab(dt_s),
            self.prm,
            m.cell_voltage_v,
            self.group_temps(m) if temps is None else temps,
            m.current_a,
            dt_s,
            self.innovation_v,
        )
        self.soc[:] = self.xs[:, K.E_SOC]

    def account_bleed(self, bled_as: np.ndarray) -> None:
        super().account_bleed(bled_as)
        self.xs[:, K.E_SOC] = self.soc


SOC_ESTIMATORS: dict[str, type[SocEstimator]] = {
    "coulomb": CoulombCounter,
    "ekf": ExtendedKalmanFilter,
}


def make_estimator(
    cfg: SocConfig,
    model: CellModel,
    group_of_sensor: np.ndarray,
    n_groups: int,
    name: str | None = None,
) -> SocEstimator:
    """The estimator named in the configuration (or ``name``)."""
    key = name or cfg.estimator
    try:
        cls = SOC_ESTIMATORS[key]
    except KeyError:
        raise ConfigError(
            f"unknown estimator {key!r}; valid: {', '.join(SOC_ESTIMATORS)}",
            field="[firmware.soc] estimator",
        ) from None
    return cls(cfg, model, group_of_sensor, n_groups)
