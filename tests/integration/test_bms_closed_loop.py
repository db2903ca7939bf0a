"""The emulated BMS in closed loop with the plant: it closes the contactors on request,
trips on faults and opens them, and keeps its state across a restart."""

from __future__ import annotations

import numpy as np
import pytest

from bms import Config, Pack
from bms.config import PackConfig
from bms.firmware.bms import EmulatedBms

PERIOD = 0.01


class Loop:
    """Plant and BMS stepped together every 10 ms; the vehicle draws ``current_a``."""

    def __init__(self, series: int = 24, soc: float = 0.6, nvm_path=None):
        self.cfg = Config(pack=PackConfig(series=series, initial_soc=soc))
        self.pack = Pack(self.cfg)
        self.bms = EmulatedBms(
            self.cfg, self.pack.chemistry, self.pack.sensors.temp_sensor_cells, nvm_path=nvm_path
        )
        self.t = 0.0
        self.out = None

    def run(self, seconds: float, request: str = "drive", current_a: float = 0.0, until=None):
        for _ in range(round(seconds / PERIOD)):
            self.pack.step(current_a, PERIOD)
            self.t += PERIOD
            self.bms.vehicle_command(self.t, request)
            self.out = self.bms.tick(self.t, self.pack.sensors.measure())
            self.pack.contactors.command(**self.out.contactors)
            self.pack.set_bleed(self.out.bleed)
            if until is not None and until(self):
                return self.t
        return None


def test_drive_request_precharges_and_closes_then_current_flows() -> None:
    loop = Loop()
    loop.run(2.0)
    assert loop.out.state == "CLOSED_DRIVE"
    assert loop.pack.contactors.closed
    loop.run(1.0, current_a=200.0)
    assert loop.pack.current_a == 200.0
    assert loop.out.limits.discharge_a > 200.0
    assert loop.out.soc is not None and 0.55 < loop.out.soc.mean < 0.65


def test_open_sense_wire_trips_and_the_contactors_open_within_the_delay() -> None:
    loop = Loop()
    loop.run(2.0, current_a=100.0)
    assert loop.pack.contactors.closed
    loop.pack.sensors.open_sense_wire(7)
    t0 = loop.t
    t_trip = loop.run(2.0, current_a=100.0, until=lambda lp: lp.out.protection.fault)
    prot = loop.bms.cfg.firmware.protection
    assert t_trip - t0 <= prot.plausibility_s + PERIOD + 1e-9
    t_open = loop.run(2.0, current_a=100.0, until=lambda lp: not lp.pack.contactors.closed)
    delay = loop.bms.cfg.firmware.contactors.fault_open_delay_s
    assert t_open - t_trip <= delay + PERIOD + 1e-9
    assert loop.out.state == "FAULT"
    assert "cell_voltage_implausible" in loop.out.protection.latched


def test_undervoltage_under_load_trips_within_debounce_and_opens() -> None:
    loop = Loop(soc=0.6)
    loop.pack.set_soc(np.where(np.arange(24) == 3, 0.002, 0.6))  # one cell nearly empty
    loop.pack.inject_weak_cell(3, capacity_factor=1.0, resistance_factor=4.0)  # and aged
    loop.run(2.0)
    uv = loop.bms.cfg.firmware.protection.cell_undervoltage
    t0 = loop.t
    t_trip = loop.run(10.0, current_a=280.0, until=lambda lp: lp.out.protection.fault)
    assert t_trip is not None and "cell_undervoltage" in loop.out.protection.latched
    # below the fault limit from the first loaded sample: debounce plus one period
    assert t_trip - t0 <= uv.fault_s + PERIOD + 1e-9
    loop.run(1.0, current_a=280.0)
    assert not loop.pack.contactors.closed


def test_soc_and_counters_survive_a_restart(tmp_path) -> None:
    path = tmp_path / "nvm.bin"
    loop = Loop(nvm_path=path)
    loop.run(60.0, current_a=140.0)
    soc_before = loop.bms.soc.soc.copy()
    assert loop.bms.shutdown()
    again = EmulatedBms(
        loop.cfg, loop.pack.chemistry, loop.pack.sensors.temp_sensor_cells, nvm_path=path
    )
    again.start(0.0, loop.pack.sensors.measure())
    np.testing.assert_allclose(again.soc.soc, soc_before, rtol=1e-12)
    assert again.image.power_on_count == 2
    assert again.image.discharge_throughput_ah == pytest.approx(140.0 * 58.0 / 3600.0, rel=0.05)


def test_bleed_switches_open_for_the_measurement_window_of_each_period() -> None:
    loop = Loop(series=12)
    socs = np.full(12, 0.6)
    socs[4] = 0.62
    loop.pack.set_soc(socs)
    loop.bms.start(0.0, loop.pack.sensors.measure())
    on = []
    for _ in range(100):  # one second at rest, contactors open
        loop.run(PERIOD, request="standby")
        on.append(bool(loop.out.bleed[4]))
    duty = float(np.mean(on[10:]))
    assert duty == pytest.approx(1.0 - loop.cfg.firmware.balancing.measure_pause_fraction)
    assert not any(loop.out.bleed[np.arange(12) != 4])


@pytest.mark.parametrize("what", ["cell_voltage", "temperature", "current"])
def test_invalid_readings_fault_without_corrupting_the_estimates(what) -> None:
    """A NaN from a broken channel (or, later, a bad CAN frame) raises a plausibility fault
    and opens the contactors; SOC, limits and balancing stay finite and sane."""
    loop = Loop(series=12)
    loop.bms.image.soc = list(loop.pack.soc[:, 0])  # as stored in persistent memory
    loop.run(2.0, current_a=100.0)
    for _ in range(150):
        loop.pack.step(100.0, PERIOD)
        loop.t += PERIOD
        m = loop.pack.sensors.measure()
        if what == "cell_voltage":
            m.cell_voltage_v[3] = np.nan
        elif what == "temperature":
            m.temp_c[0] = np.nan
        else:
            m.current_a = float("nan")
        loop.bms.vehicle_command(loop.t, "drive")
        loop.out = loop.bms.tick(loop.t, m)
        loop.pack.contactors.command(**loop.out.contactors)
    expected = {
        "cell_voltage": "cell_voltage_implausible",
        "temperature": "temp_sensor_implausible",
        "current": "current_implausible",
    }
    assert expected[what] in loop.out.protection.latched
    assert not loop.pack.contactors.closed
    soc = loop.bms.soc.soc
    assert np.all(np.isfinite(soc)) and np.all(np.abs(soc - loop.pack.soc[:, 0]) < 0.02)
    assert np.isfinite(loop.out.limits.charge_a) and np.isfinite(loop.out.limits.discharge_a)
    assert np.all(np.isfinite(loop.bms.soc.xs)) and np.all(np.isfinite(loop.bms.soc.cov))
    if what == "current":
        assert loop.bms.invalid_current_samples == 150
