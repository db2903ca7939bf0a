"""Built-in plant scenarios for ``bms-emu plant``: the pack alone, without BMS or CAN.

A scenario drives the pack (contactors, current, charger) and reports the
truth beside what the sensors measured. It uses the measured cell voltages
for the charger's constant-voltage phase, as a real charger following the
BMS's limits would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bms.errors import InputError
from bms.plant import Pack
from bms.sim.profiles import city_bus_drive

__all__ = ["ScenarioResult", "cc_cv_charge", "run_city_bus_day", "run_profile"]


@dataclass
class ScenarioResult:
    """What a scenario did, in numbers; ``to_dict`` gives the JSON summary."""

    name: str
    simulated_s: float = 0.0
    wall_s: float = 0.0
    cell_steps: int = 0
    soc_start: tuple[float, float, float] = (0.0, 0.0, 0.0)  # mean, min, max (truth)
    soc_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    discharged_ah: float = 0.0
    charged_ah: float = 0.0
    discharged_kwh: float = 0.0
    charged_kwh: float = 0.0
    min_group_voltage_v: float = float("inf")
    max_group_voltage_v: float = float("-inf")
    max_temp_c: float = float("-inf")
    cells_empty: int = 0
    cells_full: int = 0
    phases: list[str] = field(default_factory=list)
    measured: dict[str, float] = field(default_factory=dict)

    @property
    def speed_factor(self) -> float:
        return self.simulated_s / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def cell_steps_per_s(self) -> float:
        return self.cell_steps / self.wall_s if self.wall_s > 0 else float("inf")

    def absorb(
        self,
        current_a: np.ndarray,
        voltage_v: np.ndarray,
        dt_s: float,
        vmin: float,
        vmax: float,
        tmax: float,
    ) -> None:
        dis = current_a > 0
        self.discharged_ah += float(current_a[dis].sum()) * dt_s / 3600.0
        self.charged_ah -= float(current_a[~dis].sum()) * dt_s / 3600.0
        power_w = current_a * voltage_v
        self.discharged_kwh += float(power_w[dis].sum()) * dt_s / 3.6e6
        self.charged_kwh -= float(power_w[~dis].sum()) * dt_s / 3.6e6
        self.min_group_voltage_v = min(self.min_group_voltage_v, vmin)
        self.max_group_voltage_v = max(self.max_group_voltage_v, vmax)
        self.max_temp_c = max(self.max_temp_c, tmax)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items()}
        d["speed_factor"] = self.speed_factor
        d["cell_steps_per_s"] = self.cell_steps_per_s
        return d


def _soc_stats(pack: Pack) -> tuple[float, float, float]:
    s = pack.soc
    return float(s.mean()), float(s.min()), float(s.max())


def _drive(
    pack: Pack, res: ScenarioResult, profile: np.ndarray, dt_s: float, chunk: int = 36_000
) -> None:
    """Run a current profile through the batch kernel, in chunks (bounded memory)."""
    for k in range(0, profile.size, chunk):
        part = profile[k : k + chunk]
        tr = pack.run(part, dt_s)
        res.absorb(
            tr["current_a"],
            tr["pack_voltage_v"],
            dt_s,
            float(tr["min_group_voltage_v"].min()),
            float(tr["max_group_voltage_v"].max()),
            float(tr["max_temp_c"].max()),
        )
        res.cell_steps += part.size * pack.n_cells
        res.simulated_s += part.size * dt_s


def cc_cv_charge(
    pack: Pack,
    res: ScenarioResult,
    c_rate: float = 0.5,
    v_cv: float | None = None,
    cutoff_c: float = 0.05,
    dt_s: float = 1.0,
    max_s: float = 6 * 3600.0,
) -> None:
    """Depot charge: constant current, then constant voltage on the highest measured cell.

    ``v_cv`` defaults to the chemistry's charge-branch OCV at 100 % SOC and 25 degC
    plus 10 mV, so the cells end near full without passing it.
    """
    one_c = pack.chemistry.capacity_ah * pack.n_parallel
    if v_cv is None:
        v_cv = pack.chemistry.ocv_v(1.0, 25.0, "charge") + 0.01
    i_chg = c_rate * one_c
    gain_a_per_v = 0.2 * one_c / 0.01  # 0.2C per 10 mV of error
    t = 0.0
    while t < max_s:
        v = pack.step(-i_chg, dt_s)
        res.absorb(
            np.array([-i_chg]),
            np.array([v]),
            dt_s,
            float(pack.group_voltage_v.min()),
            float(pack.group_voltage_v.max()),
            float(pack.temp_c.max()),
        )
        res.cell_steps += pack.n_cells
        res.simulated_s += dt_s
        t += dt_s
        v_max = float(pack.sensors.cell_voltages().max())
        i_chg = min(c_rate * one_c, max(0.0, i_chg + gain_a_per_v * (v_cv - v_max) * 0.1))
        if i_chg < cutoff_c * one_c and v_max >= v_cv - 0.02:
            break


def _finish(pack: Pack, res: ScenarioResult, wall0: float) -> ScenarioResult:
    res.wall_s = time.perf_counter() - wall0
    res.soc_end = _soc_stats(pack)
    res.cells_empty = pack.cells_empty
    res.cells_full = pack.cells_full
    m = pack.sensors.measure()
    res.measured = {
        "cell_voltage_min_v": float(m.cell_voltage_v.min()),
        "cell_voltage_max_v": float(m.cell_voltage_v.max()),
        "true_group_voltage_min_v": float(pack.group_voltage_v.min()),
        "true_group_voltage_max_v": float(pack.group_voltage_v.max()),
        "temp_max_c": float(m.temp_c.max()),
        "true_temp_max_c": float(pack.temp_c.max()),
        "pack_voltage_v": m.pack_voltage_v,
        "true_pack_voltage_v": pack.voltage_v,
        "current_a": m.current_a,
        "true_current_a": pack.current_a,
    }
    return res


def run_city_bus_day(
    pack: Pack, dt_s: float = 0.1, drive_s: float = 5 * 3600.0, seed: int = 0
) -> ScenarioResult:
    """A bus's day: drive the route with layovers, park, depot CC-CV charge, park."""
    res = ScenarioResult(name="city-bus-day", soc_start=_soc_stats(pack))
    wall0 = time.perf_counter()
    one_c = pack.chemistry.capacity_ah * pack.n_parallel
    _close(pack, res)
    _drive(pack, res, city_bus_drive(drive_s, dt_s, one_c, seed=seed), dt_s)
    res.phases.append(f"drive {drive_s / 3600:.1f} h")
    _park(pack, res, 1800.0)
    _close(pack, res)
    t0 = res.simulated_s
    cc_cv_charge(pack, res)
    res.phases.append(f"depot charge {(res.simulated_s - t0) / 3600:.2f} h")
    _park(pack, res, 1800.0)
    return _finish(pack, res, wall0)


def _park(pack: Pack, res: ScenarioResult, duration_s: float) -> None:
    """Contactors open, no current: one exact step for a series string."""
    pack.contactors.open_all()
    pack.rest(duration_s)
    res.simulated_s += duration_s
    res.cell_steps += pack.n_cells
    res.phases.append(f"park {duration_s / 3600:.1f} h")


def run_profile(pack: Pack, profile: np.ndarray, dt_s: float, name: str) -> ScenarioResult:
    """Run a given current profile with the contactors closed."""
    if profile.size == 0:
        raise InputError("profile: it has no samples")
    res = ScenarioResult(name=name, soc_start=_soc_stats(pack))
    wall0 = time.perf_counter()
    _close(pack, res)
    _drive(pack, res, profile, dt_s)
    res.phases.append(f"{name} {profile.size * dt_s / 3600:.2f} h")
    return _finish(pack, res, wall0)


def _close(pack: Pack, res: ScenarioResult) -> None:
    """Precharge for five time constants, then close the mains (no BMS involved)."""
    c = pack.contactors
    c.command(main_neg=True, precharge=True)
    t_pre = 5 * c.cfg.precharge_resistor_ohm * c.cfg.link_capacitance_f
    pack.rest(t_pre)
    res.simulated_s += t_pre
    res.cell_steps += pack.n_cells
    c.command(main_pos=True, precharge=False)
