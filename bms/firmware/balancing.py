"""Passive balancing of the emulated BMS: which series groups bleed, and when.

Strategies, chosen by name in ``[firmware.balancing] strategy``; each implements
``demand(measurement, soc, dt_s)``:

- ``voltage``: a group bleeds while its measured voltage (averaged over 30 s)
  is above the lowest group's by more than ``voltage_threshold_v``, until it
  is within ``threshold - hysteresis``. Works where the OCV is steep (near full for
  LFP); on the flat plateau a 2 % SOC difference is 1-2 mV.
- ``soc``: from the estimated SOC, each group's charge above the emptiest
  group, ``(soc - soc_min) * Q``, is bled off; the bled charge is counted
  from the measured voltage, the resistor and the time the switch was
  closed. It starts when the largest excess passes ``soc_threshold``.
- ``off``.

Both balance only when the lowest cell voltage is at least
``min_cell_voltage_v`` and the hottest sensor at most ``max_temp_c``; at most
``max_bleeders_per_module`` switches per module are closed, the groups with
the most excess first; the switches open for ``measure_pause_fraction`` of
the time while the cell voltages are measured, so the mean bleed current is
``V / R * (1 - pause)``. The charge a group bled is reported (``bled_as``) so
the SOC estimate can account for it.
"""

from __future__ import annotations

import numpy as np

from bms.config import BalancingStrategyConfig
from bms.errors import ConfigError
from bms.firmware.kernels import bled_charge_kernel, select_bleeders, soc_excess_kernel
from bms.plant.sensors import Measurement

__all__ = ["BALANCERS", "Balancer", "SocBalancer", "VoltageBalancer", "make_balancer"]


class Balancer:
    """Base strategy (``off``): never bleeds. Subclasses implement ``demand``."""

    name = "off"

    def __init__(
        self, cfg: BalancingStrategyConfig, n_groups: int, resistor_ohm: float, capacity_as: float
    ):
        self.cfg = cfg
        self.n_groups = n_groups
        self.resistor_ohm = resistor_ohm
        self.capacity_as = capacity_as
        self.mask = np.zeros(n_groups, dtype=np.bool_)
        self.bled_as = np.zeros(n_groups)  # charge bled over the last update, A*s
        self._demand = np.zeros(n_groups, dtype=np.bool_)
        self._priority = np.zeros(n_groups)
        self._scratch = np.zeros(n_groups)

    @property
    def duty(self) -> float:
        """Fraction of the time a closed switch conducts (open while measuring)."""
        return 1.0 - self.cfg.measure_pause_fraction

    def update(self, m: Measurement, soc: np.ndarray, dt_s: float) -> np.ndarray:
        """Account for the interval that ended, then choose the switches for the next one.

        Returns the bleed mask (one bool per series group) to command.
        """
        # an invalid reading: the bleed is counted at the valid groups' median voltage
        n_invalid, v_min, t_max = bled_charge_kernel(
            m.cell_voltage_v,
            m.temp_c,
            self.mask,
            self.resistor_ohm,
            self.duty,
            dt_s,
            self._scratch,
            self.bled_as,
        )
        self._account(self.bled_as)
        cfg = self.cfg
        # no balancing on an invalid reading (a NaN temperature fails the comparison too)
        allowed = n_invalid == 0 and v_min >= cfg.min_cell_voltage_v and t_max <= cfg.max_temp_c
        if allowed:
            self.demand(m, soc, self._demand, self._priority)
        else:
            self._demand[:] = False
        select_bleeders(
            self._demand, self._priority, cfg.module_groups, cfg.max_bleeders_per_module, self.mask
        )
        return self.mask

    def _account(self, bled_as: np.ndarray) -> None:
        """Hook: strategies that track a charge target subtract what was bled."""

    def demand(
        self, m: Measurement, soc: np.ndarray, demand: np.ndarray, priority: np.ndarray
    ) -> None:
        demand[:] = False
        priority[:] = 0.0

    @property
    def busy(self) -> bool:
        return bool(self.mask.any())


class VoltageBalancer(Balancer):
    """Bleed the groups above the lowest by a threshold, with hysteresis."""

    name = "voltage"
    filter_s = 30.0  # time constant of the voltage average the decisions use

    def __init__(self, *args: object, **kw: object):
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self._v = np.full(self.n_groups, np.nan)
        self._dt_s = 0.0

    def update(self, m: Measurement, soc: np.ndarray, dt_s: float) -> np.ndarray:
        self._dt_s = dt_s
        return super().update(m, soc, dt_s)

    def demand(
        self, m: Measurement, soc: np.ndarray, demand: np.ndarray, priority: np.ndarray
    ) -> None:
        cfg = self.cfg
        # an average over filter_s keeps sample noise from switching the bleeders
        if np.isnan(self._v[0]):
            self._v[:] = m.cell_voltage_v
        else:
            alpha = self._dt_s / (self.filter_s + self._dt_s)
            self._v += alpha * (m.cell_voltage_v - self._v)
        excess = self._v - self._v.min()
        start = excess > cfg.voltage_threshold_v
        keep = self._demand & (excess > cfg.voltage_threshold_v - cfg.voltage_hysteresis_v)
        demand[:] = start | keep
        priority[:] = excess


class SocBalancer(Balancer):
    """Bleed each group's charge above the emptiest group (estimated SOC)."""

    name = "soc"

    def __init__(self, *args: object, **kw: object):
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.remaining_as = np.zeros(self.n_groups)

    def _account(self, bled_as: np.ndarray) -> None:
        self.remaining_as -= bled_as

    def demand(
        self, m: Measurement, soc: np.ndarray, demand: np.ndarray, priority: np.ndarray
    ) -> None:
        soc_excess_kernel(
            soc, self.capacity_as, self.cfg.soc_threshold, self.remaining_as, demand, priority
        )


BALANCERS: dict[str, type[Balancer]] = {
    "off": Balancer,
    "voltage": VoltageBalancer,
    "soc": SocBalancer,
}


def make_balancer(
    cfg: BalancingStrategyConfig, n_groups: int, resistor_ohm: float, capacity_as: float
) -> Balancer:
    """The strategy named in the configuration."""
    try:
        cls = BALANCERS[cfg.strategy]
    except KeyError:
        raise ConfigError(
            f"unknown strategy {cfg.strategy!r}; valid: {', '.join(BALANCERS)}",
            field="[firmware.balancing] strategy",
        ) from None
    return cls(cfg, n_groups, resistor_ohm, capacity_as)
