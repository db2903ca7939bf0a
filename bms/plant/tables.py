"""Chemistry tables resampled onto uniform grids for the kernels.

A uniform grid turns a table lookup into one multiply and a floor, with no
search. The step is the largest of a few round values that hits every
breakpoint of the file, so the resampled table interpolates exactly like the
file's own (piecewise bilinear through the same points). When no such step
exists, a fine step is used and the difference is bounded by the curvature
between breakpoints.
"""

from __future__ import annotations

import numpy as np

from bms.chemistry import Chemistry
from bms.plant import layout as L

_SOC_STEPS = (0.05, 0.025, 0.02, 0.01, 0.005, 0.0025, 0.002, 0.001, 0.0005)
_TEMP_STEPS = (2.5, 1.0, 0.5, 0.25)
# the grid spans the temperatures a configuration may set, so temperature-only factors
# (self-discharge) stay right beyond the chemistry's own tables
TEMP_SPAN_C = (-60.0, 120.0)
_R_GAS = 8.314462618  # J/(mol K)
_T_REF_K = 298.15


def uniform_grid(points: np.ndarray, steps: tuple[float, ...]) -> np.ndarray:
    """A uniform grid from points[0] to points[-1] containing every point if possible."""
    lo, hi = float(points[0]), float(points[-1])
    span = hi - lo
    for step in steps:
        rel = (points - lo) / step
        if np.all(np.abs(rel - np.round(rel)) < 1e-9):
            n = round(span / step) + 1
            return lo + step * np.arange(n)
    step = steps[-1]
    n = int(np.ceil(span / step)) + 1
    return np.linspace(lo, hi, n)


def interp_matrix(points: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """W such that W @ values is the piecewise-linear interpolant at ``fine``.

    Outside [points[0], points[-1]] the end value is held (as a clamped lookup).
    """
    eye = np.eye(points.size)
    return np.stack([np.interp(fine, points, eye[k]) for k in range(points.size)], axis=1)


def arrhenius_factor(temp_c: np.ndarray, activation_j_per_mol: float) -> np.ndarray:
    """Rate factor relative to 25 degC for an Arrhenius process."""
    t_k = np.asarray(temp_c, dtype=np.float64) + 273.15
    return np.exp(activation_j_per_mol / _R_GAS * (1.0 / _T_REF_K - 1.0 / t_k))


class KernelTables:
    """The chemistry's tables on uniform grids, ready for the kernels.

    ``base`` has shape (n_soc, n_temp, NT). The RC decay columns depend on the
    step length; :meth:`for_dt` makes a copy with exp(-dt/tau) computed at the
    file's own nodes and carried to the uniform grid like every other column, so
    the model is piecewise bilinear on the file's grid whatever the internal grid.
    The temperature grid, 2.5 K apart or finer, spans -60..120 degC and every table;
    outside its own range each table holds its end value, as a lookup clamped to it
    would. The self-discharge factor is Arrhenius at every node, linear between
    them (above the exact curve by at most (dT^2/8)(Ea/RT^2)^2: 0.4 % at 25 degC,
    1.3 % at -60 degC for 50 kJ/mol).
    A chemistry with one RC pair gets RC2 columns of R = 1 nohm, tau = 1 s, which
    the kernel leaves out.
    """

    def __init__(self, chem: Chemistry):
        soc_u = uniform_grid(chem.soc, _SOC_STEPS)
        temp_u = uniform_grid(
            np.union1d(np.union1d(chem.temp_c, chem.capacity_temp_c), TEMP_SPAN_C), _TEMP_STEPS
        )
        self.soc = soc_u
        self.temp_c = temp_u
        self._ws = interp_matrix(chem.soc, soc_u)
        self._wt = interp_matrix(chem.temp_c, temp_u)
        tab = np.empty((soc_u.size, temp_u.size, L.NT))
        chg = self.resample(chem.tables["ocv_charge_v"])
        dis = self.resample(chem.tables["ocv_discharge_v"])
        tab[:, :, L.T_OCV] = 0.5 * (chg + dis)
        tab[:, :, L.T_HYST] = 0.5 * (chg - dis)
        tab[:, :, L.T_R0] = self.resample(chem.tables["r0_ohm"])
        tab[:, :, L.T_R1] = self.resample(chem.tables["r1_ohm"])
        self._tau1 = chem.tables["tau1_s"]
        if "r2_ohm" in chem.tables:
            tab[:, :, L.T_R2] = self.resample(chem.tables["r2_ohm"])
            self._tau2 = chem.tables["tau2_s"]
        else:
            tab[:, :, L.T_R2] = 1e-9
            self._tau2 = np.ones_like(self._tau1)
        tab[:, :, L.T_E1] = 1.0
        tab[:, :, L.T_E2] = 1.0
        tab[:, :, L.T_CAP] = np.interp(temp_u, chem.capacity_temp_c, chem.capacity_factor)
        tab[:, :, L.T_SD] = arrhenius_factor(temp_u, chem.self_discharge_activation_j_per_mol)
        self.base = tab

    def resample(self, values: np.ndarray) -> np.ndarray:
        """A (soc x temp) table of the file's grid, on the uniform grid."""
        return self._ws @ values @ self._wt.T

    def for_dt(self, dt_s: float) -> np.ndarray:
        """A copy of the tables with the decay factors of step length ``dt_s``."""
        tab = self.base.copy()
        tab[:, :, L.T_E1] = self.resample(np.exp(-dt_s / self._tau1))
        tab[:, :, L.T_E2] = self.resample(np.exp(-dt_s / self._tau2))
        return tab

    def grid_scalars(self) -> dict[str, float]:
        """Origin, inverse step and size of both grids, for the model array."""
        s, t = self.soc, self.temp_c
        return {
            "soc0": float(s[0]),
            "soc_inv": float((s.size - 1) / (s[-1] - s[0])),
            "nsoc": float(s.size),
            "t0": float(t[0]),
            "t_inv": float((t.size - 1) / (t[-1] - t[0])),
            "nt": float(t.size),
        }
