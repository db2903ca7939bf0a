"""What the vehicle does: a mission of phases the VCU node follows.

A phase is ``drive`` (contactors closed in drive mode, a current profile
drawn through the inverter, cut to the BMS's limits by the VCU), ``charge``
(contactors closed in charge mode; the charger node delivers the current the
BMS asks for until the charge current falls below ``cutoff_c`` of 1C, or
``max_s``) or ``park`` (contactors open). Built-in missions:

- ``city-bus-day``: drive the route with layovers (5 h), park 30 min, depot
  charge CC-CV, park 30 min;
- ``depot-charge``: a depot charge from the pack's state, then 10 min parked;
- ``constant``: a constant current in drive mode (``--current``);
- a CSV file ``time_s,current_a``: that profile in drive mode.

Sign convention: positive current = discharge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bms.errors import InputError
from bms.sim.profiles import city_bus_drive, constant, load_csv

__all__ = ["MISSIONS", "Mission", "Phase", "make_mission"]

MISSIONS = ("city-bus-day", "depot-charge", "constant")


@dataclass
class Phase:
    kind: str  # drive | charge | park
    duration_s: float  # charge: the longest it may take
    profile: np.ndarray | None = None
    dt_s: float = 0.1
    cutoff_c: float = 0.05  # charge: done below this charge current (C)

    def describe(self) -> str:
        if self.kind == "charge":
            return f"depot charge (up to {self.duration_s / 3600:.1f} h)"
        return f"{self.kind} {self.duration_s / 3600:.2f} h"


class Mission:
    """The phases in order; :meth:`update` moves the VCU's requests along them."""

    def __init__(self, name: str, phases: list[Phase], one_c_a: float, ready_s: float = 1.0):
        self.name = name
        self.phases = phases
        self.one_c_a = one_c_a
        self.ready_s = ready_s  # standby before the first phase: the BMS powers up
        self.index = -1
        self.phase_start_s = 0.0
        self.log: list[str] = []
        self._low_since: float | None = None
        self.done = False

    @property
    def phase(self) -> Phase | None:
        return self.phases[self.index] if 0 <= self.index < len(self.phases) else None

    @property
    def nominal_s(self) -> float:
        return self.ready_s + sum(p.duration_s for p in self.phases)

    def _next(self, t_s: float) -> None:
        if self.phase is not None:
            self.log.append(f"{self.phase.kind} {(t_s - self.phase_start_s) / 3600:.2f} h")
        self.index += 1
        self.phase_start_s = t_s
        self._low_since = None
        if self.index >= len(self.phases):
            self.done = True

    def update(self, t_s: float, vcu: Any) -> None:
        o = vcu.outputs
        if self.index < 0:
            if t_s >= self.ready_s:
                self._next(t_s)
            else:
                return
        ph = self.phase
        if ph is not None and self._finished(ph, t_s, vcu.inputs):
            self._next(t_s)
            ph = self.phase
        if ph is None or ph.kind == "park":
            o["mode_request"], o["contactor_request"] = "Standby", "Open"
            o["vcu_state"] = "Parked" if ph is not None else "Ready"
        elif ph.kind == "drive":
            o["mode_request"], o["contactor_request"], o["vcu_state"] = "Drive", "Close", "Driving"
        else:
            o["mode_request"], o["contactor_request"], o["vcu_state"] = (
                "Charge",
                "Close",
                "Charging",
            )

    def _finished(self, ph: Phase, t_s: float, inputs: dict[str, Any]) -> bool:
        elapsed = t_s - self.phase_start_s
        if elapsed >= ph.duration_s - 1e-9:
            return True
        if ph.kind != "charge" or elapsed < 60.0:
            return False
        cutoff = ph.cutoff_c * self.one_c_a
        i_chg = inputs.get("charger_current_a", math.inf)
        limit = inputs.get("charge_current_limit_a", math.inf)
        low = min(i_chg if i_chg == i_chg else math.inf, limit if limit == limit else math.inf)
        if low < cutoff:
            if self._low_since is None:
                self._low_since = t_s
            return t_s - self._low_since >= 10.0
        self._low_since = None
        return False

    def current_a(self, t_s: float) -> float:
        """The traction current the driver asks for now (+ = discharge)."""
        ph = self.phase
        if ph is None or ph.kind != "drive" or ph.profile is None:
            return 0.0
        k = int((t_s - self.phase_start_s) / ph.dt_s + 1e-9)
        return float(ph.profile[k]) if k < ph.profile.size else 0.0


def make_mission(
    profile: str,
    one_c_a: float,
    duration_s: float | None = None,
    current_a: float | None = None,
    seed: int = 0,
    dt_s: float = 0.1,
) -> Mission:
    """A built-in mission by name, or a CSV profile by path."""
    if current_a is not None and profile != "constant":
        raise InputError(
            f"--current sets the current of --profile constant, not of {profile}; add "
            "--profile constant or leave --current out"
        )
    if profile == "city-bus-day":
        drive_s = 5 * 3600.0
        phases = [
            Phase("drive", drive_s, city_bus_drive(drive_s, dt_s, one_c_a, seed=seed), dt_s),
            Phase("park", 1800.0),
            Phase("charge", 6 * 3600.0),
            Phase("park", 1800.0),
        ]
    elif profile == "depot-charge":
        phases = [Phase("charge", 6 * 3600.0), Phase("park", 600.0)]
    elif profile == "constant":
        if current_a is None:
            raise InputError("--profile constant needs --current A (+ = discharge)")
        d = duration_s if duration_s is not None else 3600.0
        phases = [Phase("drive", d, constant(d, dt_s, current_a), dt_s)]
    else:
        path = Path(profile)
        if path.suffix.lower() != ".csv":
            raise InputError(
                f"--profile: unknown {profile!r}; use one of {', '.join(MISSIONS)} or a .csv file"
            )
        prof = load_csv(path, dt_s)
        phases = [Phase("drive", prof.size * dt_s, prof, dt_s)]
        profile = path.name
    return Mission(profile, phases, one_c_a)
