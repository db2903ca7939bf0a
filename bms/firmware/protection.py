"""Protections of the emulated BMS: three levels with debounce, latching faults.

Every check compares a measured value with three limits (warning, alarm,
fault). A level becomes active when its condition has held for its debounce
time, checked in the 10 ms task, so it trips within debounce + one period.
Warnings and alarms drop by themselves once the condition has been clear for
``clear_s``; a fault latches (the contactors stay open) until :meth:`reset`
is called with the condition gone, as a real BMS wants a deliberate reset.

Checks: cell over- and under-voltage (per group, numba kernel); over- and
under-temperature with separate limits while charging and discharging;
over-current in charge and discharge; cell voltage spread; loss of the
vehicle's commands; and plausibility faults: a cell voltage outside the
plausible range (an open sense wire reads about 0 V below and the sum above),
a temperature sensor open, shorted or frozen, a current reading with the
main contactors open (sensor offset) and a current that is not a number.
The firmware sees only measurements. Sign convention: positive current = discharge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bms.config import LimitConfig, ProtectionConfig
from bms.firmware.kernels import debounce_kernel
from bms.plant.sensors import Measurement

__all__ = ["LEVELS", "ProtectionStatus", "Protections"]

LEVELS = ("ok", "warning", "alarm", "fault")

_LIMITS = (
    "cell_overvoltage",
    "cell_undervoltage",
    "charge_overtemp",
    "discharge_overtemp",
    "charge_undertemp",
    "discharge_undertemp",
    "charge_overcurrent",
    "discharge_overcurrent",
    "cell_spread",
    "command_timeout",
)
PLAUSIBILITY = (
    "cell_voltage_implausible",
    "temp_sensor_implausible",
    "temp_sensor_stuck",
    "current_sensor_offset",
    "current_implausible",
)


class _Check:
    """One limit over n values (series groups, or one value)."""

    def __init__(self, cfg: LimitConfig, n: int):
        self.limits = np.array([cfg.warning, cfg.alarm, cfg.fault])
        self.debounce = np.array([cfg.warning_s, cfg.alarm_s, cfg.fault_s])
        self.clear_s = cfg.clear_s
        self.above = cfg.above
        self.timers = np.zeros((n, 3))
        self.levels = np.zeros(n, dtype=np.int64)

    def update(self, values: np.ndarray, dt_s: float) -> int:
        debounce_kernel(
            values,
            self.limits,
            self.above,
            self.debounce,
            self.clear_s,
            self.timers,
            self.levels,
            dt_s,
        )
        return int(self.levels.max())

    def idle(self, dt_s: float) -> int:
        """The check does not apply now (e.g. a charge limit while discharging)."""
        self.timers[:] = np.minimum(self.timers, 0.0) - dt_s
        self.levels[:] = 0
        return 0


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
        per_group = {"cell_overvoltage", "cell_undervoltage"}
        self._checks = {
            name: _Check(getattr(cfg, name), n_groups if name in per_group else 1)
            for name in _LIMITS
        }
        self._plaus_t = dict.fromkeys(PLAUSIBILITY, 0.0)
        self._t_last = np.full(n_temp_sensors, np.nan)
        self._t_frozen_s = np.zeros(n_temp_sensors)
        self.status = ProtectionStatus()

    def update(self, m: Measurement, dt_s: float, since_command_s: float) -> ProtectionStatus:
        """Run every check on one measurement; ``since_command_s`` is the time since the
        vehicle's last valid command frame."""
        cfg, ch, lv = self.cfg, self._checks, self.status.levels
        v = m.cell_voltage_v
        plausible = (v > cfg.cell_voltage_plausible_v[0]) & (v < cfg.cell_voltage_plausible_v[1])
        ok_v = v[plausible]
        # an implausible reading is a sensing fault, not an over- or under-voltage
        v_checked = (
            v
            if ok_v.size == v.size
            else np.where(plausible, v, np.median(ok_v) if ok_v.size else 3.0)
        )
        lv["cell_overvoltage"] = ch["cell_overvoltage"].update(v_checked, dt_s)
        lv["cell_undervoltage"] = ch["cell_undervoltage"].update(v_checked, dt_s)
        self.status.worst_group["cell_overvoltage"] = int(np.argmax(v))
        self.status.worst_group["cell_undervoltage"] = int(np.argmin(v))
        t = m.temp_c
        t_ok = t[(t > cfg.temp_plausible_c[0]) & (t < cfg.temp_plausible_c[1])]
        t_hi = np.array([t_ok.max() if t_ok.size else np.nan])
        t_lo = np.array([t_ok.min() if t_ok.size else np.nan])
        charging = m.current_a < -cfg.charge_current_a
        for name, vals, active in (
            ("charge_overtemp", t_hi, charging),
            ("charge_undertemp", t_lo, charging),
            ("discharge_overtemp", t_hi, not charging),
            ("discharge_undertemp", t_lo, not charging),
        ):
            lv[name] = ch[name].update(vals, dt_s) if active and t_ok.size else ch[name].idle(dt_s)
        i = m.current_a
        lv["charge_overcurrent"] = ch["charge_overcurrent"].update(np.array([-i]), dt_s)
        lv["discharge_overcurrent"] = ch["discharge_overcurrent"].update(np.array([i]), dt_s)
        spread = float(ok_v.max() - ok_v.min()) if ok_v.size else 0.0
        lv["cell_spread"] = ch["cell_spread"].update(np.array([spread]), dt_s)
        lv["command_timeout"] = ch["command_timeout"].update(np.array([since_command_s]), dt_s)
        # plausibility: faults after plausibility_s
        mains_open = not (
            m.contactor_feedback.get("main_pos", False)
            or m.contactor_feedback.get("main_neg", False)
        )
        frozen = self._frozen(t, dt_s)
        for name, bad in (
            ("cell_voltage_implausible", ok_v.size < v.size),
            ("temp_sensor_implausible", t_ok.size < t.size),
            ("temp_sensor_stuck", frozen),
            ("current_sensor_offset", mains_open and abs(i) > cfg.current_offset_limit_a),
            ("current_implausible", not math.isfinite(i)),
        ):
            self._plaus_t[name] = self._plaus_t[name] + dt_s if bad else 0.0
            lv[name] = 3 if bad and self._plaus_t[name] >= cfg.plausibility_s - 1e-9 else 0
        for name, level in lv.items():
            if level == 3:
                self.status.latched.add(name)
        return self.status

    def _frozen(self, t: np.ndarray, dt_s: float) -> bool:
        """A sensor whose reading has not moved for temp_stuck_s while another's has."""
        same = t == self._t_last
        self._t_frozen_s = np.where(same, self._t_frozen_s + dt_s, 0.0)
        self._t_last = t.copy()
        if t.size < 2:
            return False
        stuck = self._t_frozen_s >= self.cfg.temp_stuck_s
        return bool(stuck.any() and not stuck.all())

    def reset(self) -> bool:
        """Clear the latched faults whose condition is gone; True when none is left."""
        lv = self.status.levels
        self.status.latched = {k for k in self.status.latched if lv.get(k, 0) == 3}
        return not self.status.latched
