"""Protections trip within their debounce time plus one task period, open the contactors
(a latched fault) and clear only as specified."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_pack

from bms import ConfigError, load_config
from bms.config import ProtectionConfig
from bms.firmware.protection import Protections
from bms.plant import Measurement

PERIOD = 0.01  # the 10 ms task
CLOSED = {"main_pos": True, "main_neg": True, "precharge": False}
OPEN = {"main_pos": False, "main_neg": False, "precharge": False}


def meas(cells=None, temps=None, current=0.0, feedback=CLOSED, n=8) -> Measurement:
    v = np.full(n, 3.30) if cells is None else np.asarray(cells, dtype=float)
    t = np.full(4, 25.0) if temps is None else np.asarray(temps, dtype=float)
    return Measurement(0.0, v, t, current, float(v.sum()), float(v.sum()), dict(feedback))


def first_time(prot: Protections, m: Measurement, name: str, level: int, limit_s: float = 30):
    t = 0.0
    while t < limit_s:
        t += PERIOD
        st = prot.update(m, PERIOD, 0.0)
        if st.levels[name] >= level:
            return t
    return None


def measurement_for(name: str, value: float) -> Measurement:
    """A measurement whose checked quantity for ``name`` is ``value``."""
    if name == "cell_overvoltage" or name == "cell_undervoltage":
        return meas(cells=[3.3] * 7 + [value])
    if name == "cell_spread":
        return meas(cells=[3.3] * 7 + [3.3 + value])
    if name.endswith("temp"):
        current = -50.0 if name.startswith("charge") else 50.0
        return meas(temps=[25.0, 25.0, 25.0, value], current=current)
    if name == "charge_overcurrent":
        return meas(current=-value)
    return meas(current=value)  # discharge_overcurrent


CHECKS = [
    "cell_overvoltage",
    "cell_undervoltage",
    "charge_overtemp",
    "discharge_overtemp",
    "charge_undertemp",
    "discharge_undertemp",
    "charge_overcurrent",
    "discharge_overcurrent",
    "cell_spread",
]


@pytest.mark.parametrize("name", CHECKS)
def test_every_level_trips_within_its_debounce_plus_one_period(name) -> None:
    cfg = ProtectionConfig()
    lim = getattr(cfg, name)
    w, a, f = lim.warning, lim.alarm, lim.fault
    beyond = (f - a) * 0.5 if lim.above else (a - f) * -0.5  # a step past each limit
    values = (w + (a - w) / 2, a + (f - a) / 2, f + beyond)
    for level, (value, debounce) in enumerate(
        zip(values, (lim.warning_s, lim.alarm_s, lim.fault_s), strict=True), start=1
    ):
        prot = Protections(cfg, 8, 4)
        t = first_time(prot, measurement_for(name, value), name, level)
        assert t is not None and debounce - 1e-9 <= t <= debounce + PERIOD + 1e-9, (level, t)
        assert prot.status.levels[name] == level  # no higher level than the value reaches
    assert prot.status.fault and name in prot.status.latched


def test_a_fault_latches_until_reset_with_the_condition_gone() -> None:
    prot = Protections(ProtectionConfig(), 8, 4)
    hot = meas(cells=[3.3] * 7 + [3.75])
    assert first_time(prot, hot, "cell_overvoltage", 3) is not None
    assert not prot.reset()  # still over-voltage: the fault stays
    ok = meas()
    for _ in range(int(3.0 / PERIOD)):  # clear_s (2 s) and more
        prot.update(ok, PERIOD, 0.0)
    assert prot.status.levels["cell_overvoltage"] == 0
    assert prot.status.fault  # latched although the condition is gone
    assert prot.reset() and not prot.status.fault


def test_warnings_clear_by_themselves_after_clear_time() -> None:
    prot = Protections(ProtectionConfig(), 8, 4)
    warm = meas(cells=[3.3] * 7 + [3.62])  # above the warning, below the alarm
    assert first_time(prot, warm, "cell_overvoltage", 1) is not None
    ok = meas()
    cleared_at = first_time_clear(prot, ok, "cell_overvoltage")
    assert 2.0 - 1e-9 <= cleared_at <= 2.0 + PERIOD + 1e-9
    assert not prot.status.fault


def first_time_clear(prot, m, name):
    t = 0.0
    while prot.status.levels[name] != 0:
        t += PERIOD
        prot.update(m, PERIOD, 0.0)
    return t


def test_cell_timers_are_per_group_not_of_the_pack_maximum() -> None:
    """Two groups above the limit in turn, each for less than the debounce: no fault."""
    prot = Protections(ProtectionConfig(), 8, 4)
    a = meas(cells=[3.75] + [3.3] * 7)
    b = meas(cells=[3.3, 3.75] + [3.3] * 6)
    for k in range(200):
        prot.update(a if (k // 30) % 2 == 0 else b, PERIOD, 0.0)
    assert prot.status.levels["cell_overvoltage"] < 3 and not prot.status.fault


def test_temperature_limits_depend_on_charge_or_discharge() -> None:
    prot = Protections(ProtectionConfig(), 8, 4)
    t52 = [25, 25, 25, 52]  # above the charge alarm (50), below the discharge warning (55)
    assert first_time(prot, meas(temps=t52, current=100.0), "charge_overtemp", 1, 10) is None
    assert first_time(prot, meas(temps=t52, current=100.0), "discharge_overtemp", 1, 10) is None
    assert first_time(
        prot, meas(temps=t52, current=-100.0), "charge_overtemp", 2, 10
    ) == pytest.approx(5.0, abs=PERIOD + 1e-9)


def test_loss_of_vehicle_commands_raises_levels_with_the_silence() -> None:
    prot = Protections(ProtectionConfig(), 8, 4)
    levels = [
        prot.update(meas(), PERIOD, s).levels["command_timeout"] for s in (0.1, 0.4, 0.6, 1.2)
    ]
    assert levels == [0, 1, 2, 3]


def test_open_sense_wire_on_the_plant_is_a_plausibility_fault() -> None:
    pack = make_pack(series=12)
    prot = Protections(ProtectionConfig(), 12, pack.sensors.n_temp_sensors)
    pack.sensors.open_sense_wire(5)
    t = 0.0
    while not prot.status.fault and t < 2.0:
        pack.step(50.0, PERIOD)
        t += PERIOD
        prot.update(pack.sensors.measure(), PERIOD, 0.0)
    assert prot.status.latched == {"cell_voltage_implausible"}
    assert t == pytest.approx(0.5, abs=PERIOD + 1e-9)


@pytest.mark.parametrize("mode", ["open", "short"])
def test_open_or_shorted_temperature_sensor_is_a_plausibility_fault(mode) -> None:
    pack = make_pack(series=12)
    prot = Protections(ProtectionConfig(), 12, pack.sensors.n_temp_sensors)
    pack.sensors.set_temp_sensor_fault(1, mode)
    for _ in range(60):
        pack.step(50.0, PERIOD)
        prot.update(pack.sensors.measure(), PERIOD, 0.0)
    assert "temp_sensor_implausible" in prot.status.latched
    assert not {"charge_undertemp", "discharge_overtemp"} & prot.status.latched


def test_frozen_temperature_sensor_is_found_while_the_others_move() -> None:
    cfg = ProtectionConfig(temp_stuck_s=5.0)
    prot = Protections(cfg, 8, 4)
    rng = np.random.default_rng(1)
    for _ in range(int(6.0 / PERIOD)):
        temps = 25.0 + np.round(rng.normal(0, 0.2, 4), 1)
        temps[2] = 25.0  # frozen
        prot.update(meas(temps=temps), PERIOD, 0.0)
    assert "temp_sensor_stuck" in prot.status.latched


def test_current_with_the_mains_open_is_a_sensor_offset_fault() -> None:
    pack = make_pack(series=4, closed=False)
    prot = Protections(ProtectionConfig(), 4, pack.sensors.n_temp_sensors)
    for _ in range(100):
        pack.step(0.0, PERIOD)
        prot.update(pack.sensors.measure(), PERIOD, 0.0)
    assert not prot.status.fault
    pack.sensors.set_current_offset_fault(5.0)
    for _ in range(60):
        pack.step(0.0, PERIOD)
        prot.update(pack.sensors.measure(), PERIOD, 0.0)
    assert prot.status.latched == {"current_sensor_offset"}


def test_limits_out_of_order_in_a_file_name_the_limit(tmp_path) -> None:
    f = tmp_path / "bms.toml"
    f.write_text("[firmware.protection.cell_overvoltage]\nwarning = 3.7\nalarm = 3.65\n")
    with pytest.raises(
        ConfigError,
        match=r"\[firmware.protection.cell_overvoltage\]: needs "
        r"warning <= alarm <= fault, got 3.7, 3.65, 3.7",
    ):
        load_config(f)
