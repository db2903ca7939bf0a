"""Configuration: TOML files and the Python API build the same frozen dataclasses.

Every section validates itself on construction, so a bad value stops at
start-up with one line naming the field (and the file, when it came from one):

    my_pack.toml: [pack] initial_soc: must be within [0, 1], got 1.2

The defaults describe the built-in bus pack: 200 LFP 280 Ah cells in series.
Sign convention, everywhere in the package: positive current = discharge.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bms.errors import ConfigError

__all__ = [
    "BalancingConfig",
    "BalancingStrategyConfig",
    "CanConfig",
    "Config",
    "ContactorConfig",
    "ContactorControlConfig",
    "CurrentLimitConfig",
    "CurrentSensorConfig",
    "FirmwareConfig",
    "LimitConfig",
    "ModelConfig",
    "PackConfig",
    "ProtectionConfig",
    "SensorConfig",
    "SocConfig",
    "SpreadConfig",
    "TemperatureSensorConfig",
    "VoltageSensorConfig",
    "load_config",
    "preset",
    "presets",
]


def _num(
    default: float, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False
) -> Any:
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open})


class _Section:
    """Validation shared by every section: numbers finite and within their bounds."""

    _section: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            val = getattr(self, f.name)
            lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
            if isinstance(val, bool) or not isinstance(val, int | float):
                continue
            fld = f"[{self._section}] {f.name}"
            if not math.isfinite(val):
                raise ConfigError(f"must be a finite number, got {val}", field=fld)
            if lo is not None and (val <= lo if f.metadata.get("lo_open") else val < lo):
                rel = ">" if f.metadata.get("lo_open") else ">="
                if hi is not None:
                    raise ConfigError(f"must be within [{lo:g}, {hi:g}], got {val:g}", field=fld)
                raise ConfigError(f"must be {rel} {lo:g}, got {val:g}", field=fld)
            if hi is not None and val > hi:
                if lo is not None:
                    raise ConfigError(f"must be within [{lo:g}, {hi:g}], got {val:g}", field=fld)
                raise ConfigError(f"must be <= {hi:g}, got {val:g}", field=fld)
        self.check()

    def check(self) -> None:
        """Cross-field checks of a section (override)."""


@dataclass(frozen=True)
class PackConfig(_Section):
    """The pack: chemistry, topology, initial conditions."""

    _section = "pack"
    chemistry: str = "lfp_280ah"  # built-in name or path of a chemistry TOML file
    series: int = _num(200, 1, 100_000)
    parallel: int = _num(1, 1, 1_000)
    initial_soc: float = _num(0.9, 0.0, 1.0)
    initial_temp_c: float = _num(25.0, -60.0, 120.0)
    ambient_temp_c: float = _num(25.0, -60.0, 120.0)
    seed: int = _num(1, 0)

    @property
    def n_cells(self) -> int:
        return self.series * self.parallel


@dataclass(frozen=True)
class SpreadConfig(_Section):
    """Cell-to-cell spread, drawn once from the pack seed (normal distributions)."""

    _section = "spread"
    capacity_rel: float = _num(0.01, 0.0, 0.3)  # std of capacity / nominal
    resistance_rel: float = _num(0.03, 0.0, 0.5)  # std of resistance / table value
    soc_abs: float = _num(0.005, 0.0, 0.2)  # std of initial SOC
    self_discharge_rel: float = _num(0.2, 0.0, 2.0)  # std of self-discharge / nominal


@dataclass(frozen=True)
class ModelConfig(_Section):
    """Which parts of the cell model run (all on by default)."""

    _section = "model"
    rc_pairs: int = _num(2, 0, 2)  # capped by the chemistry's tables
    hysteresis: bool = True
    thermal: bool = True  # off: every cell stays at its initial temperature
    self_discharge: bool = True
    # Cells in parallel exchange current that depends on their state; a step is
    # split so no sub-step is longer than this (series strings need no split).
    max_parallel_step_s: float = _num(1.0, 0.0, 3600.0, lo_open=True)


@dataclass(frozen=True)
class BalancingConfig(_Section):
    """Passive balancing hardware: one switch and resistor across each series group."""

    _section = "balancing"
    resistor_ohm: float = _num(33.0, 0.0, lo_open=True)


@dataclass(frozen=True)
class ContactorConfig(_Section):
    """Main contactors, precharge path and the DC link on the vehicle side."""

    _section = "contactors"
    precharge_resistor_ohm: float = _num(50.0, 0.0, lo_open=True)
    link_capacitance_f: float = _num(1e-3, 0.0, lo_open=True)
    link_discharge_ohm: float = _num(10_000.0, 0.0, lo_open=True)  # passive discharge


@dataclass(frozen=True)
class VoltageSensorConfig(_Section):
    """A voltage measurement: ADC step, white noise, offset and gain error."""

    _section = "sensors.voltage"
    resolution_v: float = _num(1e-4, 0.0)  # ADC step; 0 = not quantised
    noise_v: float = _num(0.002, 0.0)  # rms per sample
    offset_v: float = _num(0.001, 0.0)  # std of each channel's fixed offset
    gain_error: float = _num(5e-4, 0.0, 0.5)  # std of each channel's relative gain error
    full_scale_v: float = _num(5.0, 0.0, lo_open=True)


def _cell_voltage_default() -> VoltageSensorConfig:
    return VoltageSensorConfig()


def _hv_default() -> VoltageSensorConfig:
    return VoltageSensorConfig(
        resolution_v=0.01, noise_v=0.1, offset_v=0.2, gain_error=0.002, full_scale_v=1500.0
    )


@dataclass(frozen=True)
class TemperatureSensorConfig(_Section):
    """Cell temperature sensors (NTCs): one per ``cells_per_sensor`` cells."""

    _section = "sensors.temperature"
    cells_per_sensor: int = _num(4, 1)
    placement: str = "middle"  # first | middle | last cell of each block
    cells: tuple[int, ...] = ()  # explicit cell indices; overrides the two fields above
    resolution_c: float = _num(0.1, 0.0)
    noise_c: float = _num(0.1, 0.0)
    offset_c: float = _num(0.3, 0.0)  # std of each sensor's fixed offset
    open_reading_c: float = -40.0  # what an open NTC reads
    short_reading_c: float = 150.0  # what a shorted NTC reads

    def check(self) -> None:
        if self.placement not in ("first", "middle", "last"):
            raise ConfigError(
                f"must be first, middle or last, got {self.placement!r}",
                field=f"[{self._section}] placement",
            )
        if any(c < 0 for c in self.cells):
            raise ConfigError("cell indices must be >= 0", field=f"[{self._section}] cells")


@dataclass(frozen=True)
class CurrentSensorConfig(_Section):
    """Pack current sensor (shunt or Hall): fixed offset and gain error, noise, step."""

    _section = "sensors.current"
    offset_a: float = 0.05
    gain_error: float = _num(0.005, -0.5, 0.5)
    noise_a: float = _num(0.05, 0.0)
    resolution_a: float = _num(0.01, 0.0)
    full_scale_a: float = _num(2000.0, 0.0, lo_open=True)


@dataclass(frozen=True)
class SensorConfig(_Section):
    """What the BMS measures. Noise and channel errors come from ``seed``."""

    _section = "sensors"
    seed: int = _num(2, 0)
    cell_voltage: VoltageSensorConfig = field(default_factory=_cell_voltage_default)
    temperature: TemperatureSensorConfig = field(default_factory=TemperatureSensorConfig)
    current: CurrentSensorConfig = field(default_factory=CurrentSensorConfig)
    pack_voltage: VoltageSensorConfig = field(default_factory=_hv_default)
    bus_voltage: VoltageSensorConfig = field(default_factory=_hv_default)


SOC_ESTIMATOR_NAMES = ("coulomb", "ekf")


@dataclass(frozen=True)
class SocConfig(_Section):
    """State-of-charge estimation of the emulated BMS."""

    _section = "firmware.soc"
    estimator: str = "ekf"  # coulomb | ekf
    rest_current_a: float = _num(2.0, 0.0)  # |I| below this counts as rest
    rest_time_s: float = _num(1800.0, 0.0)  # relaxation before an OCV recalibration
    min_ocv_slope_v: float = _num(0.3, 0.0)  # recalibrate only where dOCV/dSOC >= this
    ekf_voltage_sigma_v: float = _num(0.006, 0.0, lo_open=True)  # noise + model error
    ekf_soc_sigma_per_s: float = _num(4e-5, 0.0)  # process noise of SOC, 1/sqrt(s)
    ekf_resistance_error: float = _num(0.3, 0.0, 1.0)  # relative error of the model's R
    ekf_initial_soc_sigma: float = _num(0.2, 0.0, 1.0, lo_open=True)  # SOC from rest OCV
    ekf_stored_soc_sigma: float = _num(0.01, 0.0, 1.0, lo_open=True)  # SOC from memory
    current_sigma_a: float = _num(0.1, 0.0)  # current-sensor noise the filter assumes

    def check(self) -> None:
        if self.estimator not in SOC_ESTIMATOR_NAMES:
            raise ConfigError(
                f"unknown estimator {self.estimator!r}; valid: {', '.join(SOC_ESTIMATOR_NAMES)}",
                field=f"[{self._section}] estimator",
            )


BALANCING_STRATEGY_NAMES = ("off", "voltage", "soc")


@dataclass(frozen=True)
class BalancingStrategyConfig(_Section):
    """Passive balancing of the emulated BMS: which groups bleed, and when."""

    _section = "firmware.balancing"
    strategy: str = "soc"  # off | voltage | soc
    voltage_threshold_v: float = _num(0.010, 0.0)  # voltage: bleed above min + this
    voltage_hysteresis_v: float = _num(0.005, 0.0)  # ... until below min + threshold - this
    soc_threshold: float = _num(0.005, 0.0, 1.0)  # soc: start when the excess exceeds this
    min_cell_voltage_v: float = _num(3.0, 0.0)  # no balancing below this cell voltage
    max_temp_c: float = _num(50.0, -60.0, 120.0)  # no balancing above this temperature
    module_groups: int = _num(12, 1)  # series groups per cell-monitoring module
    max_bleeders_per_module: int = _num(6, 1)  # simultaneous bleed switches per module
    measure_pause_fraction: float = _num(0.1, 0.0, 0.9)  # switches open while measuring

    def check(self) -> None:
        if self.strategy not in BALANCING_STRATEGY_NAMES:
            raise ConfigError(
                f"unknown strategy {self.strategy!r}; valid: {', '.join(BALANCING_STRATEGY_NAMES)}",
                field=f"[{self._section}] strategy",
            )


@dataclass(frozen=True)
class LimitConfig(_Section):
    """One protection: three levels (warning, alarm, fault), each with its debounce
    time, and how long the condition must stay clear before a level drops."""

    _section = "firmware.protection.<limit>"
    warning: float = 0.0
    alarm: float = 0.0
    fault: float = 0.0
    above: bool = True  # True: trips above the limits; False: below
    warning_s: float = _num(2.0, 0.0, 3600.0)
    alarm_s: float = _num(1.0, 0.0, 3600.0)
    fault_s: float = _num(0.5, 0.0, 3600.0)
    clear_s: float = _num(2.0, 0.0, 3600.0)

    def check(self) -> None:
        w, a, f = self.warning, self.alarm, self.fault
        ordered = (w <= a <= f) if self.above else (w >= a >= f)
        if not all(math.isfinite(v) for v in (w, a, f)) or not ordered:
            rel = "<=" if self.above else ">="
            raise ConfigError(
                f"needs warning {rel} alarm {rel} fault, got {w:g}, {a:g}, {f:g}",
                field=f"[{self._section}]",
            )


def _limit(w: float, a: float, f: float, above: bool = True, **kw: float) -> Any:
    return field(default_factory=lambda: LimitConfig(w, a, f, above, **kw))


@dataclass(frozen=True)
class ProtectionConfig(_Section):
    """Protections of the emulated BMS (defaults for the LFP bus pack, 280 Ah cells).

    Warnings and alarms clear by themselves; faults latch until a reset request
    with the condition gone. Temperatures in degC, currents in A, voltages in V.
    """

    _section = "firmware.protection"
    cell_overvoltage: LimitConfig = _limit(3.60, 3.65, 3.70)
    cell_undervoltage: LimitConfig = _limit(2.80, 2.60, 2.50, above=False)
    charge_overtemp: LimitConfig = _limit(45.0, 50.0, 55.0, warning_s=5, alarm_s=5, fault_s=2)
    discharge_overtemp: LimitConfig = _limit(55.0, 60.0, 65.0, warning_s=5, alarm_s=5, fault_s=2)
    charge_undertemp: LimitConfig = _limit(
        5.0, 0.0, -5.0, above=False, warning_s=5, alarm_s=5, fault_s=2
    )
    discharge_undertemp: LimitConfig = _limit(
        -10.0, -20.0, -30.0, above=False, warning_s=5, alarm_s=5, fault_s=2
    )
    charge_overcurrent: LimitConfig = _limit(150.0, 280.0, 400.0, warning_s=5, alarm_s=2, fault_s=1)
    discharge_overcurrent: LimitConfig = _limit(
        400.0, 560.0, 700.0, warning_s=5, alarm_s=2, fault_s=0.5
    )
    cell_spread: LimitConfig = _limit(0.05, 0.10, 0.20, warning_s=10, alarm_s=10, fault_s=10)
    command_timeout: LimitConfig = _limit(0.3, 0.5, 1.0, warning_s=0, alarm_s=0, fault_s=0)
    cell_voltage_plausible_v: tuple[float, float] = (0.5, 4.8)  # outside: sensing fault
    temp_plausible_c: tuple[float, float] = (-39.0, 125.0)  # outside: sensor open/short
    temp_stuck_s: float = _num(60.0, 0.0, lo_open=True)  # reading frozen this long
    current_offset_limit_a: float = _num(2.0, 0.0)  # |I| with the mains open
    plausibility_s: float = _num(0.5, 0.0)  # debounce of every plausibility check
    charge_current_a: float = _num(1.0, 0.0)  # below -this the pack is charging
    # a vehicle (or charger) that draws more than the published current limit, by more
    # than max(limit_margin_a, limit_margin_rel * limit): the charge or discharge
    # over-current check warns after limit_warning_s and faults after limit_fault_s
    limit_margin_a: float = _num(10.0, 0.0)
    limit_margin_rel: float = _num(0.05, 0.0, 1.0)
    limit_warning_s: float = _num(2.0, 0.0, 3600.0)
    limit_fault_s: float = _num(10.0, 0.0, 3600.0)


@dataclass(frozen=True)
class CurrentLimitConfig(_Section):
    """Charge and discharge current limits: derating over temperature and SOC, tapered
    near the cell voltage limits. Tables are (breakpoints, current per cell in A; the pack
    limit is P times that); defaults for the 280 Ah LFP cell (1C = 280 A), after
    typical LFP datasheet charge windows (no charge below 0 degC or above 55 degC)."""

    _section = "firmware.limits"
    charge_temp_c: tuple[float, ...] = (-10.0, 0.0, 10.0, 25.0, 45.0, 55.0)
    charge_vs_temp_a: tuple[float, ...] = (0.0, 28.0, 140.0, 280.0, 280.0, 0.0)
    discharge_temp_c: tuple[float, ...] = (-30.0, -20.0, 0.0, 25.0, 55.0, 65.0)
    discharge_vs_temp_a: tuple[float, ...] = (0.0, 140.0, 420.0, 560.0, 560.0, 0.0)
    charge_soc: tuple[float, ...] = (0.0, 0.8, 0.95, 1.0)
    charge_vs_soc_a: tuple[float, ...] = (280.0, 280.0, 140.0, 0.0)  # full: no more charge
    discharge_soc: tuple[float, ...] = (0.0, 0.05, 0.2, 1.0)
    discharge_vs_soc_a: tuple[float, ...] = (0.0, 140.0, 560.0, 560.0)
    # from full limit to zero; LFP rises steeply above 3.5 V at the end of a charge, and a
    # 100 mV taper up to the 3.65 V limit let full cells take 0.1C well past 100 %
    charge_taper_v: tuple[float, float] = (3.50, 3.60)
    discharge_taper_v: tuple[float, float] = (2.90, 2.50)  # from full limit to zero

    def check(self) -> None:
        for x, y in (
            ("charge_temp_c", "charge_vs_temp_a"),
            ("discharge_temp_c", "discharge_vs_temp_a"),
            ("charge_soc", "charge_vs_soc_a"),
            ("discharge_soc", "discharge_vs_soc_a"),
        ):
            xs, ys = getattr(self, x), getattr(self, y)
            if len(xs) < 2 or len(xs) != len(ys):
                raise ConfigError(
                    f"needs as many values as {x} (at least 2)", field=f"[{self._section}] {y}"
                )
            if any(b <= a for a, b in itertools.pairwise(xs)):
                raise ConfigError("must be strictly ascending", field=f"[{self._section}] {x}")
            if any(not math.isfinite(v) or v < 0 for v in ys):
                raise ConfigError(
                    "currents must be finite and >= 0", field=f"[{self._section}] {y}"
                )
        if self.charge_taper_v[0] >= self.charge_taper_v[1]:
            raise ConfigError("needs start < end", field=f"[{self._section}] charge_taper_v")
        if self.discharge_taper_v[0] <= self.discharge_taper_v[1]:
            raise ConfigError("needs start > end", field=f"[{self._section}] discharge_taper_v")


@dataclass(frozen=True)
class ContactorControlConfig(_Section):
    """Contactor sequencing and supervision of the emulated BMS."""

    _section = "firmware.contactors"
    precharge_ratio: float = _num(0.95, 0.0, 1.0, lo_open=True)  # bus / pack to close main_pos
    precharge_timeout_s: float = _num(1.0, 0.0, 60.0, lo_open=True)
    precharge_retries: int = _num(2, 0, 10)  # further attempts after the first
    retry_delay_s: float = _num(1.0, 0.0, 600.0)  # all open between attempts
    precharge_stall_s: float = _num(0.25, 0.0, 60.0)  # 0 = no early abort
    precharge_stall_ratio: float = _num(0.1, 0.0, 1.0)  # bus / pack required by then
    overlap_s: float = _num(0.05, 0.0, 10.0)  # main_pos and precharge both closed
    open_current_a: float = _num(5.0, 0.0)  # |I| above this is an opening under load
    open_wait_s: float = _num(2.0, 0.0, 60.0)  # normal opening: wait for the current to drop
    fault_open_delay_s: float = _num(0.5, 0.0, 10.0)  # 0 = open at once
    feedback_timeout_s: float = _num(0.1, 0.0, 10.0, lo_open=True)
    weld_voltage_ratio: float = _num(0.5, 0.0, 1.0, lo_open=True)  # bus / pack after opening
    weld_check_s: float = _num(10.0, 0.0, 600.0, lo_open=True)

    def check(self) -> None:
        s = self._section
        if self.precharge_stall_s > 0.0:
            if self.precharge_stall_s >= self.precharge_timeout_s:
                raise ConfigError(
                    f"must be below precharge_timeout_s ({self.precharge_timeout_s:g}) "
                    f"or 0 (off), got {self.precharge_stall_s:g}",
                    field=f"[{s}] precharge_stall_s",
                )
            if self.precharge_stall_ratio >= self.precharge_ratio:
                raise ConfigError(
                    f"must be below precharge_ratio ({self.precharge_ratio:g}), "
                    f"got {self.precharge_stall_ratio:g}",
                    field=f"[{s}] precharge_stall_ratio",
                )


# extra keyword arguments of a python-can bus, as (key, value) pairs (a TOML table)
BusOptions = tuple[tuple[str, str | int | float | bool], ...]


@dataclass(frozen=True)
class CanConfig(_Section):
    """The CAN bus, when the command line does not name it (``--interface`` and the
    other bus options win; python-can's own configuration fills what is left)."""

    _section = "can"
    interface: str = ""  # a python-can interface: virtual, socketcan, slcan, pcan, ...
    channel: str = ""  # vcan0, /dev/ttyACM0, PCAN_USBBUS1, ...
    bitrate: int = _num(0, 0)  # bit/s; 0: python-can's configuration, else 500000
    options: BusOptions = ()  # [can.options]: extra keywords of the bus


@dataclass(frozen=True)
class FirmwareConfig(_Section):
    """The emulated BMS: task periods and algorithms."""

    _section = "firmware"
    measure_period_s: float = _num(0.01, 0.0, 10.0, lo_open=True)  # measurement, protection
    estimate_period_s: float = _num(0.1, 0.0, 60.0, lo_open=True)  # SOC, balancing, limits
    soc: SocConfig = field(default_factory=SocConfig)
    balancing: BalancingStrategyConfig = field(default_factory=BalancingStrategyConfig)
    protection: ProtectionConfig = field(default_factory=ProtectionConfig)
    limits: CurrentLimitConfig = field(default_factory=CurrentLimitConfig)
    contactors: ContactorControlConfig = field(default_factory=ContactorControlConfig)


@dataclass(frozen=True)
class Config(_Section):
    """Everything the plant needs. ``Config()`` is the built-in bus pack."""

    _section = ""
    pack: PackConfig = field(default_factory=PackConfig)
    spread: SpreadConfig = field(default_factory=SpreadConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    balancing: BalancingConfig = field(default_factory=BalancingConfig)
    contactors: ContactorConfig = field(default_factory=ContactorConfig)
    sensors: SensorConfig = field(default_factory=SensorConfig)
    firmware: FirmwareConfig = field(default_factory=FirmwareConfig)
    can: CanConfig = field(default_factory=CanConfig)

    def check(self) -> None:
        n = self.pack.n_cells
        bad = [c for c in self.sensors.temperature.cells if c >= n]
        if bad:
            raise ConfigError(
                f"cell index {bad[0]} outside the pack (0..{n - 1})",
                field="[sensors.temperature] cells",
            )


# --------------------------------------------------------------------------- loading


def _build(cls: type, data: Any, section: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"must be a table, got {type(data).__name__}", field=f"[{section}]")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown field {unknown[0]!r}; valid: {', '.join(fields)}",
            field=f"[{section}]" if section else None,
        )
    kwargs: dict[str, Any] = {}
    for name, val in data.items():
        typ = hints[name]
        sub = f"{section}.{name}" if section else name
        fld = f"[{section}] {name}" if section else name
        if dataclasses.is_dataclass(typ):
            if isinstance(val, typ):  # type: ignore[arg-type]  # a default from the parent
                kwargs[name] = val
                continue
            if isinstance(val, dict):
                # fields the file leaves out keep the defaults of *this* field
                f = fields[name]
                if f.default_factory is not dataclasses.MISSING:
                    base = f.default_factory()
                    val = {
                        k.name: _as_toml(getattr(base, k.name))
                        for k in dataclasses.fields(base)
                        if k.init
                    } | val
            kwargs[name] = _build(typ, val, sub)  # type: ignore[arg-type]
        elif typ is bool:
            if not isinstance(val, bool):
                raise ConfigError(f"must be true or false, got {val!r}", field=fld)
            kwargs[name] = val
        elif typ is int:
            if isinstance(val, bool) or not isinstance(val, int):
                raise ConfigError(f"must be an integer, got {val!r}", field=fld)
            kwargs[name] = val
        elif typ is float:
            if isinstance(val, bool) or not isinstance(val, int | float):
                raise ConfigError(f"must be a number, got {val!r}", field=fld)
            kwargs[name] = float(val)
        elif typ is str:
            if not isinstance(val, str):
                raise ConfigError(f"must be a string, got {val!r}", field=fld)
            kwargs[name] = val
        elif typ == BusOptions:
            if isinstance(val, list | tuple) and all(
                isinstance(v, list | tuple) and len(v) == 2 for v in val
            ):
                val = dict(val)  # the default's pairs, for a section the file gives in part
            if not isinstance(val, dict) or not all(
                isinstance(v, str | int | float | bool) for v in val.values()
            ):
                raise ConfigError(
                    "must be a table of keywords with a string, number or true/false each",
                    field=fld,
                )
            kwargs[name] = tuple(val.items())
        elif typing.get_origin(typ) is tuple and typing.get_args(typ)[0] is float:
            args = typing.get_args(typ)
            n_want = None if args[-1] is Ellipsis else len(args)
            if (
                not isinstance(val, list)
                or (n_want is not None and len(val) != n_want)
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in val)
            ):
                what = f"{n_want} numbers" if n_want else "numbers"
                raise ConfigError(f"must be a list of {what}", field=fld)
            kwargs[name] = tuple(float(v) for v in val)
        elif typing.get_origin(typ) is tuple:
            if not isinstance(val, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in val
            ):
                raise ConfigError("must be a list of integers", field=fld)
            kwargs[name] = tuple(val)
        else:  # pragma: no cover - a field type this loader does not know is a bug
            raise TypeError(f"unsupported config field type {typ} for {fld}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # name the section as the file spells it
        own = f"[{getattr(cls, '_section', '')}]"
        msg = str(exc)
        if section and own != f"[{section}]" and own in msg:
            raise ConfigError(msg.replace(own, f"[{section}]", 1)) from None
        raise


def _as_toml(value: Any) -> Any:
    """A default value in the form the TOML parser would give it (lists, not tuples)."""
    return list(value) if isinstance(value, tuple) else value


def _from_toml_bytes(raw: bytes, source: str) -> Config:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=source) from None
    try:
        cfg = _build(Config, data, "")
    except ConfigError as exc:
        raise ConfigError(str(exc), source=source) from None
    chem = cfg.pack.chemistry
    if chem.endswith(".toml") and not Path(chem).is_absolute() and source != "<python>":
        # a chemistry path in a config file is relative to that file
        base = Path(source).parent
        if (base / chem).is_file():
            cfg = dataclasses.replace(
                cfg, pack=dataclasses.replace(cfg.pack, chemistry=str(base / chem))
            )
    return cfg


def load_config(path: str | Path) -> Config:
    """Read a TOML configuration file. Missing sections and fields take the defaults."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"configuration file not found: {p}")
    return _from_toml_bytes(p.read_bytes(), str(p))


def presets() -> list[str]:
    """Names of the built-in configurations."""
    folder = resources.files("bms").joinpath("presets")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset(name: str) -> Config:
    """A built-in configuration by name (``bus``, ``container``, ``single_cell``)."""
    names = presets()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}; built-in: {', '.join(names)}", field="preset")
    raw = resources.files("bms").joinpath("presets", name + ".toml").read_bytes()
    return _from_toml_bytes(raw, f"bms/presets/{name}.toml")
