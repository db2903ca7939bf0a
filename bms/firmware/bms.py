"""The emulated BMS: its tasks, run at their own periods on the time it is given.

``EmulatedBms.tick(t_s, measurement)`` is the measurement task (every
``measure_period_s``, 10 ms by default): protections, then the contactor
state machine, which opens the contactors on a latched fault. Every
``estimate_period_s`` (100 ms) it also runs the estimation task: SOC (on the
mean current of the period, so no charge is lost between samples), SOH,
balancing and current limits. The bleed switches it commands are open for
the balancing's measurement window (the first ``measure_pause_fraction`` of
each estimation period), as the balancing's charge accounting assumes. It
reads sensor measurements and vehicle
commands only, never the plant; its outputs are contactor commands, bleed
switch commands and what a BMS reports on CAN.

Persistent memory: ``start`` loads SOC, SOH and counters (or starts from the
rest OCV), ``shutdown`` stores them. Sign convention: positive current = discharge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bms.chemistry import Chemistry
from bms.config import Config
from bms.firmware.balancing import make_balancer
from bms.firmware.contactors import ContactorControl, ContactorState
from bms.firmware.limits import CurrentLimits, Limits
from bms.firmware.nvm import NvmImage, PersistentMemory
from bms.firmware.protection import Protections, ProtectionStatus
from bms.firmware.soc import CellModel, PackSoc, make_estimator
from bms.firmware.soh import SohEstimator
from bms.plant.sensors import Measurement

__all__ = ["BmsOutputs", "EmulatedBms"]

_STATE_NAMES = {state: state.name for state in ContactorState}  # (an enum's .name is slow)


@dataclass(slots=True)
class BmsOutputs:
    """What the BMS commands and reports after a tick."""

    contactors: dict[str, bool]
    bleed: np.ndarray  # one bool per series group
    limits: Limits
    soc: PackSoc | None
    protection: ProtectionStatus
    state: str


class EmulatedBms:
    """The BMS firmware for a pack of ``n_series`` groups of ``n_parallel`` cells."""

    def __init__(
        self,
        cfg: Config,
        chemistry: Chemistry,
        temp_sensor_cells: np.ndarray,
        nvm_path: str | Path | None = None,
    ):
        fw = cfg.firmware
        self.cfg = cfg
        n_s, n_p = cfg.pack.series, cfg.pack.parallel
        self.n_series = n_s
        self.model = CellModel(chemistry, n_p)
        groups = np.asarray(temp_sensor_cells, dtype=np.int64) // n_p
        self.soc = make_estimator(fw.soc, self.model, groups, n_s)
        self.soh = SohEstimator(self.model, n_s, fw.soc)
        self.balancer = make_balancer(
            fw.balancing, n_s, cfg.balancing.resistor_ohm, self.model.capacity_as
        )
        self.protections = Protections(fw.protection, n_s, groups.size)
        self.limits = CurrentLimits(fw.limits, n_p)
        self.contactors = ContactorControl(fw.contactors)
        self.nvm = PersistentMemory(nvm_path, n_s) if nvm_path is not None else None
        self.image = NvmImage(n_groups=n_s)
        self.request = "standby"
        self._last_command_s = 0.0
        self._next_estimate_s = 0.0
        self._charge_as = 0.0  # current integrated since the last estimation task
        self._span_s = 0.0
        self._bleed = np.zeros(n_s, dtype=bool)
        self._no_bleed = np.zeros(n_s, dtype=bool)
        self._tick_in_period = 0
        self._measure_period_s = fw.measure_period_s
        self._estimate_period_s = fw.estimate_period_s
        ticks = max(1, round(fw.estimate_period_s / fw.measure_period_s))
        self._pause_ticks = round(fw.balancing.measure_pause_fraction * ticks)
        self.invalid_current_samples = 0
        self._limits = Limits(0.0, 0.0)
        self._pack_soc: PackSoc | None = None
        self.started = False

    # ------------------------------------------------------------------ life cycle

    def start(self, t_s: float, m: Measurement) -> None:
        """Power-on: load persistent memory, initialise the SOC (stored or rest OCV)."""
        if self.nvm is not None:
            self.image = self.nvm.load()
        img = self.image
        img.power_on_count += 1
        stored = np.asarray(img.soc, dtype=float)
        self.soc.initialise(m, stored if np.all(np.isfinite(stored)) else None)
        cap = np.asarray(img.capacity_ah, dtype=float)
        self.soh.capacity_ah[np.isfinite(cap)] = cap[np.isfinite(cap)]
        self.soh.resistance_factor[:] = np.asarray(img.resistance_factor, dtype=float)
        self._last_command_s = t_s
        self._next_estimate_s = t_s
        self.started = True

    def shutdown(self) -> bool:
        """Store SOC, SOH and counters; False when the memory could not be written."""
        img = self.image
        img.soc = list(np.clip(self.soc.soc, 0.0, 1.0))
        img.capacity_ah = list(self.soh.capacity_ah)
        img.resistance_factor = list(self.soh.resistance_factor)
        return self.nvm.save(img) if self.nvm is not None else True

    # ------------------------------------------------------------------ inputs

    def reset(self) -> bool:
        """A fault reset request (the vehicle's, or a tester's): clears latched
        protection faults whose condition is gone and arms the contactor state
        machine's reset. False when a fault is still present."""
        ok = self.protections.reset()
        self.contactors.reset()
        return ok

    @property
    def bleed_request(self) -> np.ndarray:
        """The bleed switches balancing wants on (before the measurement pause, which a
        cell monitoring unit applies itself)."""
        return self._bleed

    def vehicle_command(self, t_s: float, request: str) -> None:
        """A valid command frame from the vehicle: standby, drive or charge."""
        self.request = request
        self._last_command_s = t_s

    # ------------------------------------------------------------------ tasks

    def tick(self, t_s: float, m: Measurement) -> BmsOutputs:
        """The measurement task; the estimation task too when its period has come."""
        if not self.started:
            self.start(t_s, m)
        dt = self._measure_period_s
        status = self.protections.update(m, dt, t_s - self._last_command_s)
        if self._pack_soc is not None:  # limits are published: a draw above them is checked
            lim = self._limits
            status = self.protections.check_limits(m.current_a, lim.charge_a, lim.discharge_a, dt)
        cmds = self.contactors.update(t_s, m, self.request, status.fault)
        if math.isfinite(m.current_a):  # an invalid reading is a protection fault, not charge
            self._charge_as += m.current_a * dt
        else:
            self.invalid_current_samples += 1
        self._span_s += dt
        if t_s + 1e-9 >= self._next_estimate_s:
            self._estimate(m)
            self._next_estimate_s += self._estimate_period_s
            self._tick_in_period = 0
        if status.fault:
            self._bleed[:] = False
        # the bleed switches open for the measurement window at the start of each period
        paused = self._tick_in_period < self._pause_ticks
        self._tick_in_period += 1
        bleed = self._no_bleed if paused else self._bleed
        state = _STATE_NAMES[self.contactors.state]
        return BmsOutputs(cmds, bleed, self._limits, self._pack_soc, status, state)

    def _estimate(self, m: Measurement) -> None:
        span = self._span_s
        if span <= 0.0:
            return
        mean = Measurement(  # the sample, with the period's mean current
            m.time_s,
            m.cell_voltage_v,
            m.temp_c,
            self._charge_as / span,
            m.pack_voltage_v,
            m.bus_voltage_v,
            m.contactor_feedback,
        )
        self._charge_as = 0.0
        self._span_s = 0.0
        temps = self.soc.group_temps(m)
        self.soc.update(mean, span, temps)
        self.soh.update(mean, span, self.soc.soc, temps)
        self._bleed = self.balancer.update(m, self.soc.soc, span).copy()
        self.soc.account_bleed(self.balancer.bled_as)
        self._limits = self.limits.update(m, self.soc.soc)
        self._pack_soc = self.soc.pack()
        img = self.image
        i = mean.current_a
        if i > 0:
            img.discharge_throughput_ah += i * span / 3600.0
        else:
            img.charge_throughput_ah -= i * span / 3600.0
        img.operating_time_s += span
