"""Main contactors, precharge path and the vehicle's DC link.

A scalar model, in Python: three contactors (main positive, main negative,
precharge) with commanded and actual state; a welded contactor stays closed
whatever the command. The DC link is a capacitor with a passive discharge
resistor; through the precharge resistor it charges with the exact RC solution.
The bus voltage (link side) is what the BMS compares with the pack voltage.
"""

from __future__ import annotations

import math

from bms.config import ContactorConfig
from bms.errors import InputError

__all__ = ["CONTACTORS", "Contactors"]

CONTACTORS = ("main_pos", "main_neg", "precharge")


class Contactors:
    """Commanded state, actual state (feedback) and the DC-link voltage."""

    def __init__(self, cfg: ContactorConfig):
        self.cfg = cfg
        self.commanded = dict.fromkeys(CONTACTORS, False)
        self.welded = dict.fromkeys(CONTACTORS, False)
        self.bus_voltage_v = 0.0
        self._tau_pre_s = cfg.precharge_resistor_ohm * cfg.link_capacitance_f
        self._tau_dis_s = cfg.link_discharge_ohm * cfg.link_capacitance_f
        self._closed = False
        self._precharging = False
        self._v_target = 0.0
        self._feedback = (False, False, False)

    def _update(self) -> None:
        c, w = self.commanded, self.welded
        pos, neg, pre = (c[k] or w[k] for k in CONTACTORS)
        self._feedback = (pos, neg, pre)
        self._closed = pos and neg
        self._precharging = (not self._closed) and pre and neg

    def command(self, **states: bool) -> None:
        """Command contactors: ``command(main_neg=True, precharge=True)``."""
        for name, val in states.items():
            if name not in self.commanded:
                raise InputError(f"contactor {name!r} unknown; valid: {', '.join(CONTACTORS)}")
            self.commanded[name] = bool(val)
        self._update()

    def open_all(self) -> None:
        self.command(main_pos=False, main_neg=False, precharge=False)

    @property
    def actual(self) -> dict[str, bool]:
        """Real position of each contactor (what auxiliary contacts report)."""
        return dict(zip(CONTACTORS, self._feedback, strict=True))

    @property
    def feedback(self) -> tuple[bool, bool, bool]:
        """:attr:`actual` as (main_pos, main_neg, precharge), without building a dict."""
        return self._feedback

    @property
    def closed(self) -> bool:
        """True when both mains conduct: the vehicle's current flows."""
        return self._closed

    @property
    def precharging(self) -> bool:
        """True when precharge and main negative conduct but the mains do not both."""
        return self._precharging

    def weld(self, name: str, welded: bool = True) -> None:
        """Inject (or remove) a welded contactor: it stays closed whatever is commanded."""
        if name not in self.welded:
            raise InputError(f"contactor {name!r} unknown; valid: {', '.join(CONTACTORS)}")
        self.welded[name] = welded
        self._update()

    def clear_faults(self) -> None:
        for k in CONTACTORS:
            self.welded[k] = False
        self._update()

    def active_faults(self) -> list[str]:
        return [f"contactor {k} welded" for k in CONTACTORS if self.welded[k]]

    def precharge_current_a(self, pack_voltage_v: float, dt_s: float) -> float:
        """Mean current into the DC link through the precharge resistor over ``dt_s``."""
        cfg = self.cfg
        v0 = self.bus_voltage_v
        v1 = pack_voltage_v + (v0 - pack_voltage_v) * math.exp(-dt_s / self._tau_pre_s)
        self._v_target = v1
        return cfg.link_capacitance_f * (v1 - v0) / dt_s

    def advance(self, pack_voltage_v: float, dt_s: float) -> None:
        """Move the DC-link voltage on by ``dt_s`` after a plant step."""
        if self._closed:
            self.bus_voltage_v = pack_voltage_v
        elif self._precharging:
            self.bus_voltage_v = self._v_target
        else:
            self.bus_voltage_v *= math.exp(-dt_s / self._tau_dis_s)
