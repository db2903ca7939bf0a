"""Protections of the emulated BMS: three levels with debounce, latching faults.

Every check compares a measured value with three limits (warning, alarm,
fault). A level becomes active when its condition has held for its debounce
time, checked in the 10 ms task, so it trips within debounce + one period.
Warnings and alarms drop by themselves once the condition has been clear for
``clear_s``; a fault latches (the contactors stay open) until :meth:`reset`
is called with the condition gone, as a real BMS wants a deliberate reset.

Checks: cell over- and under-voltage (per group); over- and
under-temperature with separate limits while charging and discharging;
over-current in charge and discharge (above fixed limits, and above the current
limit the BMS publishes: see :meth:`Protections.check_limits`); cell voltage spread; loss of the
vehicle's commands; and plausibility faults: a cell voltage outside the
plausible range (an open sense wire reads about 0 V below and the sum above),
a temperature sensor open, shorted or frozen, a current reading with the
main contactors open (sensor offset) and a current that is not a number.
The firmware sees only measurements. Sign convention: positive current = discharge.

Every check of a period runs in one call of the numba kernel
:func:`~bms.firmware.kernels.protection_kernel` (one pass over the cell voltages,
one over the temperatures); the tables below say what each check compares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bms.config import ProtectionConfig
from bms.firmware import kernels as K
from bms.plant.sensors import Measurement

__all__ = ["LEVELS", "ProtectionStatus", "Protections"]

LEVELS = ("ok", "warning", "alarm", "fault")

# every limit check: (quantity compared with its limits, when it applies); its limits
# are the ProtectionConfig field of its name. Out of its condition, or with no
# plausible reading of its quantity, a check idles at level 0.
_LIMITS = {
    "cell_overvoltage": (K.Q_CELL_V, K.ALWAYS),  # per series group
    "cell_undervoltage": (K.Q_CELL_V, K.ALWAYS),  # per series group
    "charge_overtemp": (K.Q_TEMP_MAX_C, K.CHARGING),
    "charge_undertemp": (K.Q_TEMP_MIN_C, K.CHARGING),
    "discharge_overtemp": (K.Q_TEMP_MAX_C, K.DISCHARGING),
    "discharge_undertemp": (K.Q_TEMP_MIN_C, K.DISCHARGING),
    "charge_overcurrent": (K.Q_CHARGE_A, K.ALWAYS),
    "discharge_overcurrent": (K.Q_DISCHARGE_A, K.ALWAYS),
    "cell_spread": (K.Q_SPREAD_V, K.ALWAYS),
    "command_timeout": (K.Q_SINCE_COMMAND_S, K.ALWAYS),
}
# faults after plausibility_s, in the kernel's order (K.PL_*)
PLAUSIBILITY = (
    "cell_voltage_implausible",
    "temp_sensor_implausible",
    "temp_sensor_stuck",
    "current_sensor_offset",
    "current_implausible",
)


@dataclass
class ProtectionStatus:
    """Level of every check (0 ok .. 3 fault) and the latched faults."""

    levels: dict[str, int] = field(default_factory=dict)
    latched: set[str] = field(default_factory=set)
    worst_group: dict[str, int] = field(default_factory=dict)  # per-group checks

    @property
    def fault(self) -> bool:
        """True while any fault is latched: the contactors must open."""
        return bool(self.latched)

    def names(self, level: int) -> list[str]:
        return sorted(k for k, v in self.levels.items() if v == level)


class Protections:
    """All checks of the 10 ms task. ``update`` returns the status after this period."""

    def __init__(self, cfg: ProtectionConfig, n_groups: int, n_temp_sensors: int):
        self.cfg = cfg
        self.n_groups = n_groups
        self.n_temp_sensors = n_temp_sensors
        self._names = (*_LIMITS, *PLAUSIBILITY)
        n_checks = len(_LIMITS)
        self._n_checks = n_checks
        # parameters and state in two buffers, seen here through views (the kernel's own)
        self._fbuf, self._ibuf = K.protection_buffers(n_groups, n_temp_sensors, n_checks)
        (
            prm,
            self._lim,
            self._wiring,
            self._timers,  # debounce state: (check, group, level); group 0 for one value
            self._row_levels,
            self._t_last,
            self._t_frozen_s,
            self._plaus_s,
            self._scratch,
            self._levels,
        ) = K.protection_views(self._fbuf, self._ibuf, n_groups, n_temp_sensors, n_checks)
        prm[K.PR_CELL_V_LO], prm[K.PR_CELL_V_HI] = cfg.cell_voltage_plausible_v
        prm[K.PR_TEMP_LO_C], prm[K.PR_TEMP_HI_C] = cfg.temp_plausible_c
        prm[K.PR_STUCK_S] = cfg.temp_stuck_s
        prm[K.PR_OFFSET_A] = cfg.current_offset_limit_a
        prm[K.PR_PLAUSIBILITY_S] = cfg.plausibility_s
        prm[K.PR_CHARGE_A] = cfg.charge_current_a
        self._prm = prm
        for c, name in enumerate(_LIMITS):
            lim = getattr(cfg, name)
            self._lim[c, K.L_LIMITS : K.L_LIMITS + 3] = (lim.warning, lim.alarm, lim.fault)
            self._lim[c, K.L_DEBOUNCE_S : K.L_DEBOUNCE_S + 3] = (
                lim.warning_s,
                lim.alarm_s,
                lim.fault_s,
            )
            self._lim[c, K.L_CLEAR_S] = lim.clear_s
            self._lim[c, K.L_ABOVE] = 1.0 if lim.above else 0.0
        self._wiring[:] = list(_LIMITS.values())
        self._t_last[:] = np.nan
        self._over_limit_s = {"charge_overcurrent": 0.0, "discharge_overcurrent": 0.0}
        # check_limits' constants, looked up once (it runs every 10 ms)
        self._limit_k = (
            cfg.limit_margin_a,
            cfg.limit_margin_rel,
            cfg.limit_fault_s - 1e-9,
            cfg.limit_warning_s - 1e-9,
        )
        self._level_of = dict.fromkeys(self._names, 0)  # the kernel's levels, by name
        self.status = ProtectionStatus()

    def update(self, m: Measurement, dt_s: float, since_command_s: float) -> ProtectionStatus:
        """Run every check on one measurement; ``since_command_s`` is the time since the
        vehicle's last valid command frame."""
        v, t = m.cell_voltage_v, m.temp_c
        if len(v) != self.n_groups or len(t) != self.n_temp_sensors:
            raise ValueError(
                f"protections of {self.n_groups} groups and {self.n_temp_sensors} temperature "
                f"sensors got {len(v)} cell voltages and {len(t)} temperatures"
            )
        fb = m.contactor_feedback
        mains_open = not (fb.get("main_pos", False) or fb.get("main_neg", False))
        changed, worst, i_max, i_min = K.protection_kernel(
            v,
            t,
            float(m.current_a),
            float(since_command_s),
            mains_open,
            float(dt_s),
            self._fbuf,
            self._ibuf,
            self._n_checks,
        )
        st = self.status
        lv = st.levels
        if changed or len(lv) != len(self._names):
            self._level_of = dict(zip(self._names, self._levels.tolist(), strict=True))
            lv.update(self._level_of)
        st.worst_group["cell_overvoltage"] = i_max
        st.worst_group["cell_undervoltage"] = i_min
        if worst == 3:
            st.latched.update(name for name, level in lv.items() if level == 3)
        return st

    def check_limits(
        self, current_a: float, charge_limit_a: float, discharge_limit_a: float, dt_s: float
    ) -> ProtectionStatus:
        """A draw above the published current limit: the charge or discharge over-current
        check warns after ``limit_warning_s`` and faults (latched) after ``limit_fault_s``;
        its level is the higher of this and the fixed limits'. Run after :meth:`update`."""
        i = current_a if math.isfinite(current_a) else 0.0
        self._check_limit("discharge_overcurrent", i, discharge_limit_a, dt_s)
        self._check_limit("charge_overcurrent", -i, charge_limit_a, dt_s)
        return self.status

    def _check_limit(self, name: str, amps: float, limit_a: float, dt_s: float) -> None:
        """One direction of :meth:`check_limits`: ``amps`` drawn against ``limit_a``."""
        margin_a, margin_rel, fault_s, warning_s = self._limit_k
        margin = max(margin_a, margin_rel * max(limit_a, 0.0))
        level = self._level_of[name]  # the fixed limits' level (the kernel's)
        if amps > limit_a + margin:
            held = self._over_limit_s[name] + dt_s
            if held >= fault_s:
                level = 3
            elif held >= warning_s:
                level = max(level, 1)
        else:
            held = 0.0
        self._over_limit_s[name] = held
        self.status.levels[name] = level
        if level == 3:
            self.status.latched.add(name)

    def reset(self) -> bool:
        """Clear the latched faults whose condition is gone; True when none is left."""
        lv = self.status.levels
        self.status.latched = {k for k in self.status.latched if lv.get(k, 0) == 3}
        return not self.status.latched
