"""The pack plant: the ground truth every firmware algorithm is judged against.

``Pack`` owns the structure-of-arrays state and calls the kernels of
:mod:`bms.plant.kernels`. Only tests and reports read its true state; the
emulated BMS reads :attr:`Pack.sensors` (what a real BMS would measure).

Sign convention, stated once for the whole package: positive current = discharge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bms.chemistry import Chemistry, load_chemistry
from bms.config import Config
from bms.errors import InputError
from bms.plant import layout as L
from bms.plant.contactors import Contactors
from bms.plant.kernels import bleed_kernel, run_kernel, step_kernel, step_n_kernel
from bms.plant.sensors import Sensors
from bms.plant.tables import KernelTables

__all__ = ["TRACE_COLUMNS", "Pack", "Trace"]

#: Columns of :attr:`Trace.data`, one row per step.
TRACE_COLUMNS = (
    "current_a",
    "pack_voltage_v",
    "min_group_voltage_v",
    "max_group_voltage_v",
    "mean_soc",
    "min_soc",
    "max_soc",
    "max_temp_c",
)

_SECONDS_PER_MONTH = 30.0 * 86400.0
_DT_CACHE = 8  # tables kept for this many distinct step lengths


@dataclass(frozen=True)
class Trace:
    """Result of :meth:`Pack.run`: one row per step, optional per-cell snapshots."""

    dt_s: float
    data: np.ndarray  # (n_steps, len(TRACE_COLUMNS))
    snapshot_every: int
    snapshots: np.ndarray  # (n_snap, 3, n_cells): soc, temp_c, current_a

    def __getitem__(self, column: str) -> np.ndarray:
        try:
            return self.data[:, TRACE_COLUMNS.index(column)]
        except ValueError:
            raise KeyError(f"{column!r}; columns: {', '.join(TRACE_COLUMNS)}") from None

    @property
    def time_s(self) -> np.ndarray:
        """End time of each step, s."""
        return self.dt_s * np.arange(1, self.data.shape[0] + 1)


class Pack:
    """S series groups of P parallel cells, with sensors, contactors and fault hooks.

    >>> pack = Pack()                       # the built-in bus pack
    >>> v = pack.step(current_a=150.0, dt_s=0.1)
    >>> reading = pack.sensors.measure()    # what the BMS sees
    """

    def __init__(self, config: Config | None = None, chemistry: Chemistry | None = None):
        cfg = config if config is not None else Config()
        self.config = cfg
        self.chemistry = chemistry if chemistry is not None else load_chemistry(cfg.pack.chemistry)
        chem = self.chemistry
        pc = cfg.pack
        self.n_series = pc.series
        self.n_parallel = pc.parallel
        self.n_cells = pc.n_cells
        n = self.n_cells
        rng = np.random.default_rng(pc.seed)
        sp = cfg.spread

        self.tables = KernelTables(chem)
        grid = self.tables.grid_scalars()
        self._tabs: dict[float, np.ndarray] = {}  # per step length, with its decay factors
        m = np.zeros(L.NM)
        m[L.M_SOC0], m[L.M_SOC_INV], m[L.M_NSOC] = grid["soc0"], grid["soc_inv"], grid["nsoc"]
        m[L.M_T0], m[L.M_T_INV], m[L.M_NT] = grid["t0"], grid["t_inv"], grid["nt"]
        m[L.M_GAMMA] = chem.hysteresis_gamma
        m[L.M_ETA] = chem.coulombic_efficiency
        m[L.M_AMBIENT] = pc.ambient_temp_c
        m[L.M_RC] = min(cfg.model.rc_pairs, chem.rc_pairs)
        m[L.M_HYST] = float(cfg.model.hysteresis)
        m[L.M_THERMAL] = float(cfg.model.thermal)
        m[L.M_SELFDIS] = float(cfg.model.self_discharge)
        m[L.M_LAST_DT] = -1.0
        self._m = m

        # per-cell parameters with the seeded spread
        p = np.zeros((L.NP, n))
        cap_f = np.clip(rng.normal(1.0, sp.capacity_rel, n), 0.5, 1.5)
        res_f = np.clip(rng.normal(1.0, sp.resistance_rel, n), 0.2, 5.0)
        soc0 = np.clip(rng.normal(pc.initial_soc, sp.soc_abs, n), 0.0, 1.0)
        sd_f = np.clip(rng.normal(1.0, sp.self_discharge_rel, n), 0.0, None)
        p[L.P_Q_AS] = chem.capacity_ah * 3600.0 * cap_f
        p[L.P_RSCALE] = res_f
        p[L.P_SD] = chem.self_discharge_perc_per_month / 100.0 / _SECONDS_PER_MONTH * sd_f
        p[L.P_CTH] = chem.thermal_mass_j_per_k
        p[L.P_RTH] = 1.0 / chem.heat_transfer_w_per_k
        self._p = p
        self._p_healthy = p.copy()  # faults scale from these values

        x = np.zeros((L.NX, n))
        x[L.X_SOC] = soc0
        x[L.X_TEMP] = pc.initial_temp_c
        self._x = x
        g = np.zeros((L.NG, self.n_series))
        self._g = g
        self._bleed_on = np.zeros(self.n_series, dtype=bool)
        self._g_bleed = 1.0 / cfg.balancing.resistor_ohm

        self.time_s = 0.0
        self.current_a = 0.0  # pack current over the last step (0 with contactors open)
        self.voltage_v = 0.0  # pack terminal voltage at the end of the last step
        self.contactors = Contactors(cfg.contactors)
        self.sensors = Sensors(cfg, self)
        self._out = np.zeros(L.NO)
        self._max_sub_s = cfg.model.max_parallel_step_s if self.n_parallel > 1 else math.inf
        self._settle()

    def _settle(self) -> None:
        """Bring the terminal voltages up to date with the state (a 1 ns step at 0 A), so
        the sensors read the pack as it now is after a set-up change."""
        self.voltage_v = float(
            step_kernel(
                self._x,
                self._p,
                self._g,
                self._tab(1e-9),
                self._m,
                0.0,
                1e-9,
                self.n_parallel,
                self._out,
            )
        )

    def _split(self, dt_s: float) -> tuple[int, float]:
        """(n, dt / n): cells in parallel exchange a current that depends on their state,
        so their steps are split into sub-steps of at most ``max_parallel_step_s``; a
        series string takes any step whole (n = 1)."""
        if dt_s <= self._max_sub_s:
            return 1, dt_s
        n_sub = math.ceil(dt_s / self._max_sub_s)
        return n_sub, dt_s / n_sub

    def _tab(self, dt_s: float) -> np.ndarray:
        """The tables with the RC decay factors of step length ``dt_s`` (cached)."""
        tab = self._tabs.get(dt_s)
        if tab is None:
            if len(self._tabs) >= _DT_CACHE:
                del self._tabs[next(iter(self._tabs))]
            tab = self.tables.for_dt(dt_s)
            self._tabs[dt_s] = tab
        return tab

    # ---------------------------------------------------------------- stepping

    def step(self, current_a: float, dt_s: float) -> float:
        """Advance by ``dt_s`` seconds with the vehicle drawing ``current_a`` (+ = discharge).

        The current flows only while both main contactors are closed; on the
        precharge path the pack supplies the DC-link charging current; with the
        contactors open it supplies none. Returns the pack terminal voltage, V.
        """
        if not (math.isfinite(current_a) and math.isfinite(dt_s)) or dt_s <= 0.0:
            self._bad_step(current_a, dt_s)
        cont = self.contactors
        if cont.closed:
            i = current_a
        else:
            i = cont.precharge_current_a(self.voltage_v, dt_s) if cont.precharging else 0.0
        n_sub, sub = self._split(dt_s)
        v = step_n_kernel(
            self._x,
            self._p,
            self._g,
            self._tab(sub),
            self._m,
            i,
            sub,
            n_sub,
            self.n_parallel,
            self._out,
        )
        cont.advance(v, dt_s)
        self.voltage_v = v
        self.current_a = i
        self.time_s += dt_s
        return v

    def rest(self, dt_s: float) -> float:
        """Advance by ``dt_s`` at zero current: one exact step for a series string (an idle
        stretch costs one kernel call), sub-steps of ``max_parallel_step_s`` when cells
        in parallel exchange current."""
        return self.step(0.0, dt_s)

    def run(self, current_a: np.ndarray, dt_s: float, snapshot_every: int = 0) -> Trace:
        """Run a current profile (A per step of ``dt_s``) inside one kernel call.

        The contactors hold their state over the run; with them open no current
        flows. ``snapshot_every`` > 0 records every cell's SOC, temperature and
        current after every n-th step.
        """
        prof = np.ascontiguousarray(current_a, dtype=np.float64)
        if prof.ndim != 1:
            raise InputError(f"current profile: must be 1-D, got shape {prof.shape}")
        bad = np.flatnonzero(~np.isfinite(prof))
        if bad.size:
            raise InputError(
                f"current profile: value {prof[bad[0]]} at step {bad[0]} is not "
                "finite; fix or drop that sample"
            )
        if not (math.isfinite(dt_s) and dt_s > 0.0):
            raise InputError(f"dt_s: must be a finite number > 0, got {dt_s}")
        if snapshot_every < 0:
            raise InputError(f"snapshot_every: must be >= 0, got {snapshot_every}")
        if not self.contactors.closed:
            prof = np.zeros_like(prof)
        n_sub, sub = self._split(dt_s)  # the trace keeps the last sub-step of each step
        steps = np.repeat(prof, n_sub) if n_sub > 1 else prof
        out = np.empty((steps.size, len(TRACE_COLUMNS)))
        n_snap = prof.size // snapshot_every if snapshot_every else 0
        snap = np.empty((n_snap, 3, self.n_cells))
        run_kernel(
            self._x,
            self._p,
            self._g,
            self._tab(sub),
            self._m,
            steps,
            sub,
            self.n_parallel,
            out,
            snap,
            max(snapshot_every * n_sub, 1),
        )
        if n_sub > 1:
            out = np.ascontiguousarray(out[n_sub - 1 :: n_sub])
        if prof.size:
            self.voltage_v = float(out[-1, 1])
            self.current_a = float(prof[-1])
            span_s = dt_s * prof.size
            if self.contactors.precharging:  # the link charge (< 1 As) is left out of the cells
                self.contactors.precharge_current_a(self.voltage_v, span_s)
            self.contactors.advance(self.voltage_v, span_s)
        self.time_s += dt_s * prof.size
        return Trace(dt_s=dt_s, data=out, snapshot_every=snapshot_every, snapshots=snap)

    @staticmethod
    def _bad_step(current_a: float, dt_s: float) -> None:
        if not math.isfinite(current_a):
            raise InputError(f"current_a: must be a finite number of amperes, got {current_a}")
        raise InputError(f"dt_s: must be a finite number of seconds > 0, got {dt_s}")

    def warm_up(self) -> None:
        """Compile (or load from cache) every kernel this pack uses, without changing it."""
        saved = (self._x.copy(), self._g.copy(), self._m.copy(), self._p.copy())
        tab = self._tab(1e-9)
        step_kernel(self._x, self._p, self._g, tab, self._m, 0.0, 1e-9, self.n_parallel, self._out)
        run_kernel(
            self._x,
            self._p,
            self._g,
            tab,
            self._m,
            np.zeros(1),
            1e-9,
            self.n_parallel,
            np.empty((1, len(TRACE_COLUMNS))),
            np.empty((0, 3, self.n_cells)),
            1,
        )
        step_n_kernel(
            self._x, self._p, self._g, tab, self._m, 0.0, 1e-9, 1, self.n_parallel, self._out
        )
        bleed_kernel(self._bleed_on.copy(), self._g_bleed, self._bleed_on, self._g)
        self.sensors.warm_up()
        self._x[:], self._g[:], self._m[:], self._p[:] = saved

    # ---------------------------------------------------------------- balancing

    def set_bleed(self, groups_on: np.ndarray | list[bool]) -> None:
        """Close (True) or open the balancing switch of each series group."""
        mask = np.asarray(groups_on, dtype=bool)
        if mask.shape != (self.n_series,):
            raise InputError(
                f"balancing mask: needs {self.n_series} values (one per series "
                f"group), got shape {mask.shape}"
            )
        bleed_kernel(mask, self._g_bleed, self._bleed_on, self._g)

    @property
    def bleed_on(self) -> np.ndarray:
        return self._bleed_on.copy()

    @property
    def bleed_current_a(self) -> np.ndarray:
        """Bleed current of each series group over the last step, A."""
        return self._g[L.G_IBLEED].copy()

    # ---------------------------------------------------------------- ambient

    @property
    def ambient_temp_c(self) -> float:
        return float(self._m[L.M_AMBIENT])

    @ambient_temp_c.setter
    def ambient_temp_c(self, value: float) -> None:
        if not (math.isfinite(value) and -60.0 <= value <= 120.0):
            raise InputError(f"ambient_temp_c: must be within [-60, 120] degC, got {value}")
        self._m[L.M_AMBIENT] = value

    # ---------------------------------------------------------------- truth (tests, reports)

    def _cells(self, row: int) -> np.ndarray:
        return self._x[row].reshape(self.n_series, self.n_parallel)

    @property
    def soc(self) -> np.ndarray:
        """True SOC of every cell, shape (series, parallel). A view: do not write."""
        return self._cells(L.X_SOC)

    @property
    def temp_c(self) -> np.ndarray:
        """True temperature of every cell, degC, shape (series, parallel)."""
        return self._cells(L.X_TEMP)

    @property
    def cell_current_a(self) -> np.ndarray:
        """Current through each cell over the last step, A (+ = discharge)."""
        return self._cells(L.X_I)

    @property
    def heat_w(self) -> np.ndarray:
        return self._cells(L.X_HEAT)

    @property
    def hysteresis(self) -> np.ndarray:
        return self._cells(L.X_H)

    @property
    def rc_voltage_v(self) -> np.ndarray:
        """Voltages across the RC pairs, shape (2, series, parallel)."""
        return self._x[L.X_V1 : L.X_V2 + 1].reshape(2, self.n_series, self.n_parallel)

    @property
    def group_voltage_v(self) -> np.ndarray:
        """True terminal voltage of each series group, V. A view: do not write."""
        return self._g[L.G_V]

    @property
    def cell_flags(self) -> np.ndarray:
        """0 normal, 1 empty (SOC < 0), 2 over-full (SOC > 1), shape (series, parallel)."""
        return self._cells(L.X_FLAG).astype(np.int8)

    @property
    def cells_empty(self) -> int:
        """How many cells are over-discharged (SOC below 0)."""
        return int(np.count_nonzero(self._x[L.X_FLAG] == L.FLAG_EMPTY))

    @property
    def cells_full(self) -> int:
        """How many cells are over-charged (SOC above 1)."""
        return int(np.count_nonzero(self._x[L.X_FLAG] == L.FLAG_FULL))

    @property
    def capacity_ah(self) -> np.ndarray:
        """Capacity of every cell at 25 degC (spread and faults applied), Ah."""
        return (self._p[L.P_Q_AS] / 3600.0).reshape(self.n_series, self.n_parallel)

    @property
    def resistance_factor(self) -> np.ndarray:
        return self._p[L.P_RSCALE].reshape(self.n_series, self.n_parallel)

    def set_soc(self, soc: float | np.ndarray) -> None:
        """Set every cell's SOC (scenario set-up); RC voltages are left as they are."""
        arr = np.broadcast_to(np.asarray(soc, dtype=np.float64), (self.n_cells,))
        if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
            raise InputError("soc: every value must be within [0, 1]")
        self._x[L.X_SOC] = arr
        self._x[L.X_FLAG] = 0.0
        self._settle()

    def set_temp_c(self, temp_c: float | np.ndarray) -> None:
        arr = np.broadcast_to(np.asarray(temp_c, dtype=np.float64), (self.n_cells,))
        if not np.all(np.isfinite(arr)) or np.any(arr < -60) or np.any(arr > 120):
            raise InputError("temp_c: every value must be within [-60, 120] degC")
        self._x[L.X_TEMP] = arr
        self._settle()

    def cell_index(self, series: int, parallel: int = 0) -> int:
        if not (0 <= series < self.n_series and 0 <= parallel < self.n_parallel):
            raise InputError(
                f"cell ({series}, {parallel}) outside the pack "
                f"({self.n_series} x {self.n_parallel})"
            )
        return series * self.n_parallel + parallel

    # ---------------------------------------------------------------- faults

    def _check_cell(self, cell: int) -> int:
        if not 0 <= cell < self.n_cells:
            raise InputError(f"cell: index {cell} outside the pack (0..{self.n_cells - 1})")
        return cell

    def inject_weak_cell(
        self, cell: int, capacity_factor: float = 0.7, resistance_factor: float = 2.0
    ) -> None:
        """Make a cell weak: its capacity and resistance scaled from their healthy values."""
        c = self._check_cell(cell)
        if not (0.0 < capacity_factor <= 2.0) or not (0.0 < resistance_factor <= 100.0):
            raise InputError(
                "weak cell: capacity_factor must be in (0, 2] and resistance_factor in (0, 100]"
            )
        self._p[L.P_Q_AS, c] = self._p_healthy[L.P_Q_AS, c] * capacity_factor
        self._p[L.P_RSCALE, c] = self._p_healthy[L.P_RSCALE, c] * resistance_factor

    def inject_internal_short(self, cell: int, resistance_ohm: float | None) -> None:
        """A leak resistance across a cell (``None`` removes it)."""
        c = self._check_cell(cell)
        if resistance_ohm is None:
            self._p[L.P_GLEAK, c] = 0.0
            return
        if not (math.isfinite(resistance_ohm) and resistance_ohm > 0.0):
            raise InputError(f"internal short: resistance_ohm must be > 0, got {resistance_ohm}")
        self._p[L.P_GLEAK, c] = 1.0 / resistance_ohm

    def clear_faults(self) -> None:
        """Remove every injected fault: cells, sensors and contactor welds."""
        self._p[:] = self._p_healthy
        self._m[L.M_LAST_DT] = -1.0
        self.sensors.clear_faults()
        self.contactors.clear_faults()

    def active_faults(self) -> list[str]:
        """One line per injected fault, for reports."""
        out = []
        h, p = self._p_healthy, self._p
        for c in np.flatnonzero((p[L.P_Q_AS] != h[L.P_Q_AS]) | (p[L.P_RSCALE] != h[L.P_RSCALE])):
            out.append(
                f"weak cell {c}: capacity x{p[L.P_Q_AS, c] / h[L.P_Q_AS, c]:.2f}, "
                f"resistance x{p[L.P_RSCALE, c] / h[L.P_RSCALE, c]:.2f}"
            )
        for c in np.flatnonzero(p[L.P_GLEAK] > 0):
            out.append(f"internal short cell {c}: {1.0 / p[L.P_GLEAK, c]:.3g} ohm")
        out += self.sensors.active_faults()
        out += self.contactors.active_faults()
        return out

    def __repr__(self) -> str:
        return (
            f"Pack({self.n_series}S{self.n_parallel}P {self.chemistry.name}, "
            f"t={self.time_s:.1f} s, V={self.voltage_v:.2f} V)"
        )
