"""An independent plain-Python twin of the pack plant step, for tests.

Written from the model specification in the docstring of ``bms.plant.kernels``,
not from the kernels: scalar loops, :mod:`math`, and its own bilinear
interpolation on the chemistry file's rectilinear grids (found with
:mod:`bisect`). It imports neither ``bms.plant.kernels`` nor ``bms.plant.tables``
and never calls numba.

Model, per step of length ``dt`` at pack current ``I`` (+ = discharge):

* per cell, parameters at the start of the step: OCV_mid = (charge + discharge) / 2
  and M = (charge - discharge) / 2; the OCV is extrapolated linearly in SOC beyond
  [0, 1] from the end segment and floored at 0 V; every other parameter takes the
  SOC clamped to [0, 1]; temperature is clamped to the 2-D tables' range (to the
  capacity table's range for the capacity factor); e_k is the bilinear
  interpolation of exp(-dt / tau_k) evaluated at the file's nodes; R0, R1, R2 are
  multiplied by the cell's resistance factor; the self-discharge factor is
  Arrhenius, exp(Ea / R (1 / 298.15 - 1 / (T + 273.15))), evaluated at the model's
  temperature nodes (``Pack.tables.temp_c``) and linear between them.
* a = max(OCV + M h, 0) - sum v_k e_k,  b = R0 + sum R_k (1 - e_k)
* group voltage V = (sum a / b - I) / (sum 1 / b + sum g_leak + g_bleed), cell current
  i = (a - V) / b
* v_k' = v_k e_k + R_k (1 - e_k) i;  heat = i^2 R0 + sum v_k'^2 / R_k + V^2 g_leak
* SOC' = SOC - eta_if_charging i dt / (Q capf) - sd_rate sdf dt
* h' = s + (h - s) exp(-gamma |i| dt / (Q capf)), s = -1 for i > 0 else +1 (h kept at i == 0)
* T' = T_inf + (T - T_inf) exp(-dt / (Rth Cth)), T_inf = T_amb + heat Rth
* flag 1 when SOC < 0, 2 when SOC > 1, else 0.

Pack level (``ModelConfig.max_parallel_step_s``): with cells in parallel a step longer
than that limit is split into ``ceil(dt / limit)`` equal sub-steps; a series string
(P = 1) always takes the step whole.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any

R_GAS = 8.314462618  # J/(mol K)
T_REF_K = 298.15
SECONDS_PER_MONTH = 30.0 * 86400.0

#: Names of the per-step pack figures :meth:`Twin.run` records (same names as a Trace).
RUN_COLUMNS = (
    "current_a",
    "pack_voltage_v",
    "min_group_voltage_v",
    "max_group_voltage_v",
    "mean_soc",
    "min_soc",
    "max_soc",
    "max_temp_c",
)


def _clamp(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else (hi if v > hi else v)


def _segment(grid: list[float], x: float) -> tuple[int, float]:
    """Interval [grid[i], grid[i+1]] used for ``x`` (the end one outside) and the weight of
    grid[i+1]; the weight is not clamped, so it extrapolates outside the grid."""
    i = bisect_right(grid, x) - 1
    i = min(max(i, 0), len(grid) - 2)
    return i, (x - grid[i]) / (grid[i + 1] - grid[i])


def _bilinear(tab: list[list[float]], i: int, ws: float, j: int, wt: float) -> float:
    lo = tab[i][j] + ws * (tab[i + 1][j] - tab[i][j])
    hi = tab[i][j + 1] + ws * (tab[i + 1][j + 1] - tab[i][j + 1])
    return lo + wt * (hi - lo)


def arrhenius(temp_c: float, activation_j_per_mol: float) -> float:
    """Self-discharge rate factor relative to 25 degC."""
    return math.exp(activation_j_per_mol / R_GAS * (1.0 / T_REF_K - 1.0 / (temp_c + 273.15)))


class ChemLookup:
    """A chemistry's parameters at (soc, temp), from the file's own grids."""

    def __init__(self, chem: Any, sd_nodes: list[float]):
        self.sd_nodes = [float(v) for v in sd_nodes]
        self.soc = [float(v) for v in chem.soc]
        self.temp = [float(v) for v in chem.temp_c]
        tabs = {k: v.tolist() for k, v in chem.tables.items()}
        chg, dis = tabs["ocv_charge_v"], tabs["ocv_discharge_v"]
        rows = list(zip(chg, dis, strict=True))
        self.ocv_mid = [[0.5 * (c + d) for c, d in zip(rc, rd, strict=True)] for rc, rd in rows]
        self.hyst_half = [[0.5 * (c - d) for c, d in zip(rc, rd, strict=True)] for rc, rd in rows]
        self.r = [tabs["r0_ohm"], tabs["r1_ohm"]]
        self.tau = [tabs["tau1_s"]]
        self.rc_pairs = 1
        if "r2_ohm" in tabs:
            self.r.append(tabs["r2_ohm"])
            self.tau.append(tabs["tau2_s"])
            self.rc_pairs = 2
        self.cap_t = [float(v) for v in chem.capacity_temp_c]
        self.cap_f = [float(v) for v in chem.capacity_factor]
        self.activation = float(chem.self_discharge_activation_j_per_mol)
        self._decays: dict[float, list[list[list[float]]]] = {}

    def sd_factor(self, temp_c: float) -> float:
        """Arrhenius at the model's temperature nodes, linear between, held at the ends."""
        nodes = self.sd_nodes
        t = _clamp(temp_c, nodes[0], nodes[-1])
        k, w = _segment(nodes, t)
        lo, hi = arrhenius(nodes[k], self.activation), arrhenius(nodes[k + 1], self.activation)
        return lo + w * (hi - lo)

    def decay_tables(self, dt_s: float) -> list[list[list[float]]]:
        """exp(-dt / tau_k) at the file's nodes, one table per RC pair."""
        tabs = self._decays.get(dt_s)
        if tabs is None:
            tabs = [[[math.exp(-dt_s / t) for t in row] for row in tau] for tau in self.tau]
            self._decays[dt_s] = tabs
        return tabs

    def ocv(self, soc: float, temp_c: float) -> tuple[float, float]:
        """(OCV_mid, M): OCV_mid extrapolated in SOC, M at clamped SOC."""
        t = _clamp(temp_c, self.temp[0], self.temp[-1])
        j, wt = _segment(self.temp, t)
        i, ws = _segment(self.soc, soc)  # not clamped: linear extrapolation
        ocv = _bilinear(self.ocv_mid, i, ws, j, wt)
        ic, wc = _segment(self.soc, _clamp(soc, 0.0, 1.0))
        return ocv, _bilinear(self.hyst_half, ic, wc, j, wt)

    def params(self, soc: float, temp_c: float, dt_s: float) -> dict[str, Any]:
        t = _clamp(temp_c, self.temp[0], self.temp[-1])
        j, wt = _segment(self.temp, t)
        i, ws = _segment(self.soc, _clamp(soc, 0.0, 1.0))
        ocv, m = self.ocv(soc, temp_c)
        r = [_bilinear(tab, i, ws, j, wt) for tab in self.r]
        e = [_bilinear(tab, i, ws, j, wt) for tab in self.decay_tables(dt_s)]
        tc = _clamp(temp_c, self.cap_t[0], self.cap_t[-1])
        k, wk = _segment(self.cap_t, tc)
        capf = self.cap_f[k] + wk * (self.cap_f[k + 1] - self.cap_f[k])
        return {
            "ocv": ocv,
            "m": m,
            "r0": r[0],
            "rk": r[1:],
            "ek": e,
            "capf": capf,
            "sdf": self.sd_factor(temp_c),
        }


class Twin:
    """S series groups of P parallel cells, stepped in plain Python.

    Cell ``c = s * P + p`` as in the plant. Build it with :meth:`from_pack`.
    """

    def __init__(
        self,
        chem: Any,
        *,
        n_series: int,
        n_parallel: int,
        soc: list[float],
        temp_c: list[float],
        v_rc: list[list[float]],
        h: list[float],
        q_as: list[float],
        r_factor: list[float],
        sd_per_s: list[float],
        g_leak: list[float],
        g_bleed: list[float],
        rc_pairs: int,
        hysteresis: bool,
        thermal: bool,
        self_discharge: bool,
        ambient_c: float,
        sd_nodes: list[float],
        max_parallel_step_s: float = math.inf,
    ):
        self.lut = ChemLookup(chem, sd_nodes)
        self.n_series = n_series
        self.n_parallel = n_parallel
        n = n_series * n_parallel
        self.n_cells = n
        self.soc = list(soc)
        self.temp_c = list(temp_c)
        self.v_rc = [list(v_rc[0]), list(v_rc[1])]
        self.h = list(h)
        self.q_as = list(q_as)
        self.r_factor = list(r_factor)
        self.sd_per_s = list(sd_per_s)
        self.g_leak = list(g_leak)
        self.g_bleed = list(g_bleed)
        self.rc = min(rc_pairs, self.lut.rc_pairs)
        self.hysteresis = hysteresis
        self.thermal = thermal
        self.self_discharge = self_discharge
        self.ambient_c = ambient_c
        self.max_sub_s = max_parallel_step_s if n_parallel > 1 else math.inf
        self.gamma = float(chem.hysteresis_gamma)
        self.eta = float(chem.coulombic_efficiency)
        self.r_th = 1.0 / float(chem.heat_transfer_w_per_k)
        self.c_th = float(chem.mass_kg) * float(chem.specific_heat_j_per_kg_k)
        self.current = [0.0] * n
        self.heat = [0.0] * n
        self.flag = [0] * n
        self.self_discharged = [0.0] * n  # SOC lost to self-discharge so far
        self.group_v = [0.0] * n_series
        self.bleed_a = [0.0] * n_series
        self.a = [0.0] * n  # a and b of the last step (V = a - b i)
        self.b = [0.0] * n
        self.voltage_v = 0.0

    @classmethod
    def from_pack(cls, pack: Any) -> Twin:
        """A twin in the pack's current state, with the pack's per-cell parameters.

        Reads the public truth properties and the documented parameter rows of
        ``pack._p`` (capacity, resistance factor, self-discharge, leak conductance);
        thermal constants, hysteresis rate and efficiency come from the chemistry.
        """
        from bms.plant import layout as L  # row names only

        n = pack.n_cells
        cfg = pack.config
        g_bleed = [1.0 / cfg.balancing.resistor_ohm if on else 0.0 for on in pack.bleed_on.tolist()]
        return cls(
            pack.chemistry,
            n_series=pack.n_series,
            n_parallel=pack.n_parallel,
            soc=pack.soc.reshape(n).tolist(),
            temp_c=pack.temp_c.reshape(n).tolist(),
            v_rc=pack.rc_voltage_v.reshape(2, n).tolist(),
            h=pack.hysteresis.reshape(n).tolist(),
            q_as=pack._p[L.P_Q_AS].tolist(),
            r_factor=pack._p[L.P_RSCALE].tolist(),
            sd_per_s=pack._p[L.P_SD].tolist(),
            g_leak=pack._p[L.P_GLEAK].tolist(),
            g_bleed=g_bleed,
            rc_pairs=cfg.model.rc_pairs,
            hysteresis=cfg.model.hysteresis,
            thermal=cfg.model.thermal,
            self_discharge=cfg.model.self_discharge,
            ambient_c=pack.ambient_temp_c,
            max_parallel_step_s=cfg.model.max_parallel_step_s,
            sd_nodes=pack.tables.temp_c.tolist(),
        )

    # ------------------------------------------------------------------ stepping

    def step(self, current_a: float, dt_s: float) -> float:
        """Advance by ``dt_s`` at pack current ``current_a``; returns the pack voltage."""
        if dt_s > self.max_sub_s:
            n_sub = math.ceil(dt_s / self.max_sub_s)
            for _ in range(n_sub):
                v = self.model_step(current_a, dt_s / n_sub)
            return v
        return self.model_step(current_a, dt_s)

    def model_step(self, current_a: float, dt_s: float) -> float:
        """One step of the cell model (no splitting); returns the pack voltage."""
        lut = self.lut
        n_par = self.n_parallel
        rc = self.rc
        v_pack = 0.0
        for s in range(self.n_series):
            cells = range(s * n_par, (s + 1) * n_par)
            pars = {}
            sum_ab = 0.0
            sum_inv_b = 0.0
            sum_gl = 0.0
            for c in cells:
                p = lut.params(self.soc[c], self.temp_c[c], dt_s)
                f = self.r_factor[c]
                p["r0"] *= f
                p["rk"] = [r * f for r in p["rk"]]
                a = p["ocv"]
                if self.hysteresis:
                    a += p["m"] * self.h[c]
                a = max(a, 0.0)
                b = p["r0"]
                for k in range(rc):
                    a -= self.v_rc[k][c] * p["ek"][k]
                    b += p["rk"][k] * (1.0 - p["ek"][k])
                self.a[c] = a
                self.b[c] = b
                pars[c] = p
                sum_ab += a / b
                sum_inv_b += 1.0 / b
                sum_gl += self.g_leak[c]
            gb = self.g_bleed[s]
            v = (sum_ab - current_a) / (sum_inv_b + sum_gl + gb)
            for c in cells:
                p = pars[c]
                i = (self.a[c] - v) / self.b[c]
                heat = i * i * p["r0"]
                for k in range(rc):
                    e, r = p["ek"][k], p["rk"][k]
                    self.v_rc[k][c] = self.v_rc[k][c] * e + r * (1.0 - e) * i
                    heat += self.v_rc[k][c] * self.v_rc[k][c] / r
                heat += v * v * self.g_leak[c]
                q = self.q_as[c] * p["capf"]
                eta = self.eta if i < 0.0 else 1.0
                sd = self.sd_per_s[c] * p["sdf"] * dt_s if self.self_discharge else 0.0
                self.soc[c] = self.soc[c] - eta * i * dt_s / q - sd
                self.self_discharged[c] += sd
                if self.hysteresis and i != 0.0:
                    target = -1.0 if i > 0.0 else 1.0
                    self.h[c] = target + (self.h[c] - target) * math.exp(
                        -self.gamma * abs(i) * dt_s / q
                    )
                if self.thermal:
                    t_inf = self.ambient_c + heat * self.r_th
                    decay = math.exp(-dt_s / (self.r_th * self.c_th))
                    self.temp_c[c] = t_inf + (self.temp_c[c] - t_inf) * decay
                self.current[c] = i
                self.heat[c] = heat
                self.flag[c] = 1 if self.soc[c] < 0.0 else (2 if self.soc[c] > 1.0 else 0)
            self.group_v[s] = v
            self.bleed_a[s] = v * gb
            v_pack += v
        self.voltage_v = v_pack
        return v_pack

    def run(self, current_a: list[float], dt_s: float) -> dict[str, list[float]]:
        """Step through a profile; per-step pack figures under :data:`RUN_COLUMNS`."""
        out: dict[str, list[float]] = {k: [] for k in RUN_COLUMNS}
        for cur in current_a:
            v = self.step(float(cur), dt_s)
            out["current_a"].append(float(cur))
            out["pack_voltage_v"].append(v)
            out["min_group_voltage_v"].append(min(self.group_v))
            out["max_group_voltage_v"].append(max(self.group_v))
            out["mean_soc"].append(sum(self.soc) / self.n_cells)
            out["min_soc"].append(min(self.soc))
            out["max_soc"].append(max(self.soc))
            out["max_temp_c"].append(max(self.temp_c))
        return out

    # ------------------------------------------------------------------ views

    def state(self) -> dict[str, list[float]]:
        """Per-cell state (and last-step results) in cell order, for comparisons."""
        return {
            "soc": list(self.soc),
            "v1": list(self.v_rc[0]),
            "v2": list(self.v_rc[1]),
            "h": list(self.h),
            "temp_c": list(self.temp_c),
            "current_a": list(self.current),
            "heat_w": list(self.heat),
            "flag": [float(f) for f in self.flag],
        }


def pack_state(pack: Any) -> dict[str, list[float]]:
    """The pack's true per-cell state in the layout of :meth:`Twin.state`."""
    n = pack.n_cells
    rc = pack.rc_voltage_v.reshape(2, n)
    return {
        "soc": pack.soc.reshape(n).tolist(),
        "v1": rc[0].tolist(),
        "v2": rc[1].tolist(),
        "h": pack.hysteresis.reshape(n).tolist(),
        "temp_c": pack.temp_c.reshape(n).tolist(),
        "current_a": pack.cell_current_a.reshape(n).tolist(),
        "heat_w": pack.heat_w.reshape(n).tolist(),
        "flag": pack.cell_flags.reshape(n).astype(float).tolist(),
    }
