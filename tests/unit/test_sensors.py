"""Sensors: what the BMS measures is the truth through a seeded, faultable channel."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import NO_SPREAD, make_pack

from bms import Config, InputError, Measurement, Pack
from bms.config import (
    CurrentSensorConfig,
    PackConfig,
    SensorConfig,
    TemperatureSensorConfig,
    VoltageSensorConfig,
)

QUIET = VoltageSensorConfig(
    resolution_v=0.0, noise_v=0.0, offset_v=0.0, gain_error=0.0, full_scale_v=10.0
)


def _pack(
    series: int = 8, parallel: int = 1, sensors: SensorConfig | None = None, **pack_kw
) -> Pack:
    cfg = Config(
        pack=PackConfig(series=series, parallel=parallel, **pack_kw),
        spread=NO_SPREAD,
        sensors=sensors if sensors is not None else SensorConfig(),
    )
    pack = Pack(cfg)
    pack.contactors.command(main_pos=True, main_neg=True)
    return pack


def test_measurement_carries_sensor_readings_only() -> None:
    names = {f.name for f in dataclasses.fields(Measurement)}
    assert names == {
        "time_s",
        "cell_voltage_v",
        "temp_c",
        "current_a",
        "pack_voltage_v",
        "bus_voltage_v",
        "contactor_feedback",
    }


def test_cell_voltage_noise_has_the_configured_rms_and_no_bias() -> None:
    sc = SensorConfig(cell_voltage=dataclasses.replace(QUIET, noise_v=0.002))
    pack = _pack(series=50, sensors=sc)
    truth = pack.group_voltage_v.copy()
    err = np.array([pack.sensors.cell_voltages() - truth for _ in range(400)])
    assert err.std() == pytest.approx(0.002, rel=0.05)
    assert abs(err.mean()) < 0.0002


def test_adc_step_quantises_readings() -> None:
    sc = SensorConfig(cell_voltage=dataclasses.replace(QUIET, resolution_v=0.001, noise_v=0.0005))
    v = _pack(sensors=sc).sensors.cell_voltages()
    assert np.allclose(v / 0.001, np.round(v / 0.001), atol=1e-9)


def test_channel_offsets_are_fixed_per_channel_and_averaging_reveals_them() -> None:
    sc = SensorConfig(cell_voltage=dataclasses.replace(QUIET, offset_v=0.003, noise_v=0.001))
    pack = _pack(series=20, sensors=sc)
    mean_err = np.mean(
        [pack.sensors.cell_voltages() - pack.group_voltage_v for _ in range(300)], axis=0
    )
    assert np.allclose(mean_err, pack.sensors._cv_offset, atol=0.0004)
    assert mean_err.std() > 0.001  # offsets differ between channels


def test_same_sensor_seed_gives_identical_readings_and_another_seed_does_not() -> None:
    a, b = _pack(), _pack()
    c = _pack(sensors=SensorConfig(seed=99))
    ra, rb, rc = a.sensors.measure(), b.sensors.measure(), c.sensors.measure()
    np.testing.assert_array_equal(ra.cell_voltage_v, rb.cell_voltage_v)
    np.testing.assert_array_equal(ra.temp_c, rb.temp_c)
    assert ra.current_a == rb.current_a
    assert not np.array_equal(ra.cell_voltage_v, rc.cell_voltage_v)


def test_open_sense_wire_reads_zero_below_and_the_sum_above() -> None:
    pack = _pack(series=6, sensors=SensorConfig(cell_voltage=QUIET))
    truth = pack.group_voltage_v.copy()
    pack.sensors.open_sense_wire(3)
    v = pack.sensors.cell_voltages()
    assert v[2] == pytest.approx(0.0, abs=1e-12)
    assert v[3] == pytest.approx(truth[2] + truth[3], rel=1e-12)
    np.testing.assert_allclose(np.delete(v, [2, 3]), np.delete(truth, [2, 3]), rtol=1e-12)
    assert v.sum() == pytest.approx(truth.sum(), rel=1e-12)  # the string still adds up
    assert pack.active_faults() == ["sense wire 3 open"]


def test_open_wire_sum_clips_at_the_adc_full_scale() -> None:
    pack = _pack(
        series=4, sensors=SensorConfig(cell_voltage=dataclasses.replace(QUIET, full_scale_v=5.0))
    )
    pack.sensors.open_sense_wire(2)
    assert pack.sensors.cell_voltages()[2] == 5.0


@pytest.mark.parametrize(("wire", "zero_group"), [(0, 0), (6, 5)])
def test_open_end_wire_zeroes_the_end_group(wire: int, zero_group: int) -> None:
    pack = _pack(series=6, sensors=SensorConfig(cell_voltage=QUIET))
    pack.sensors.open_sense_wire(wire)
    v = pack.sensors.cell_voltages()
    assert v[zero_group] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.delete(v, zero_group) > 3.0)


def test_reconnected_wire_reads_normally_again() -> None:
    pack = _pack(series=4, sensors=SensorConfig(cell_voltage=QUIET))
    pack.sensors.open_sense_wire(2)
    pack.sensors.open_sense_wire(2, is_open=False)
    np.testing.assert_allclose(pack.sensors.cell_voltages(), pack.group_voltage_v, rtol=1e-12)


def test_temperature_sensors_one_per_block_placed_in_the_middle() -> None:
    pack = _pack(
        series=12,
        sensors=SensorConfig(
            temperature=TemperatureSensorConfig(cells_per_sensor=4, placement="middle")
        ),
    )
    assert pack.sensors.temp_sensor_cells.tolist() == [1, 5, 9]
    first = _pack(
        series=10,
        sensors=SensorConfig(
            temperature=TemperatureSensorConfig(cells_per_sensor=4, placement="first")
        ),
    )
    assert first.sensors.temp_sensor_cells.tolist() == [0, 4, 8]


def test_temperature_sensor_reads_its_own_cell() -> None:
    quiet_t = TemperatureSensorConfig(
        cells_per_sensor=1, noise_c=0.0, offset_c=0.0, resolution_c=0.0
    )
    pack = _pack(series=4, sensors=SensorConfig(temperature=quiet_t))
    pack.set_temp_c(np.array([20.0, 30.0, 40.0, 50.0]))
    np.testing.assert_allclose(pack.sensors.temperatures(), [20.0, 30.0, 40.0, 50.0])


def test_stuck_open_and_shorted_temperature_sensors() -> None:
    tc = TemperatureSensorConfig(
        cells_per_sensor=1, noise_c=0.0, offset_c=0.0, open_reading_c=-40.0, short_reading_c=150.0
    )
    pack = _pack(series=4, sensors=SensorConfig(temperature=tc))
    before = pack.sensors.temperatures()
    pack.sensors.set_temp_sensor_fault(0, "stuck")
    pack.sensors.set_temp_sensor_fault(1, "open")
    pack.sensors.set_temp_sensor_fault(2, "short")
    pack.set_temp_c(45.0)
    t = pack.sensors.temperatures()
    assert t[0] == before[0]  # holds its last reading while the cell warms
    assert t[1] == -40.0 and t[2] == 150.0
    assert t[3] == pytest.approx(45.0, abs=0.05)
    assert len(pack.active_faults()) == 3
    pack.clear_faults()
    assert pack.sensors.temperatures()[0] == pytest.approx(45.0, abs=0.05)


def test_bad_temperature_fault_mode_and_index_are_rejected() -> None:
    pack = _pack(series=4)
    with pytest.raises(InputError, match="fault 'melted' unknown; valid: ok, stuck, open, short"):
        pack.sensors.set_temp_sensor_fault(0, "melted")
    with pytest.raises(InputError, match="index 9 outside"):
        pack.sensors.set_temp_sensor_fault(9, "open")


def test_current_sensor_applies_gain_offset_and_injected_offset() -> None:
    cs = CurrentSensorConfig(offset_a=0.05, gain_error=0.005, noise_a=0.0, resolution_a=0.0)
    pack = _pack(sensors=SensorConfig(current=cs))
    pack.step(200.0, 0.1)
    assert pack.sensors.current() == pytest.approx(200.0 * 1.005 + 0.05, rel=1e-12)
    pack.sensors.set_current_offset_fault(3.0)
    assert pack.sensors.current() == pytest.approx(200.0 * 1.005 + 3.05, rel=1e-12)
    assert pack.active_faults() == ["current sensor offset +3.000 A"]


def test_pack_voltage_reading_tracks_the_truth_within_its_error_budget() -> None:
    pack = _pack(series=200)
    m = pack.sensors.measure()
    assert m.pack_voltage_v == pytest.approx(pack.voltage_v, rel=0.01)
    assert m.cell_voltage_v.shape == (200,)
    assert m.contactor_feedback == {"main_pos": True, "main_neg": True, "precharge": False}


def test_bus_voltage_reading_follows_the_precharge() -> None:
    pack = make_pack(series=100, closed=False)
    assert pack.sensors.bus_voltage() == pytest.approx(0.0, abs=1.0)
    pack.contactors.command(main_neg=True, precharge=True)
    tau = 50.0 * 1e-3
    for _ in range(50):
        pack.step(0.0, tau / 10)
    assert pack.sensors.bus_voltage() == pytest.approx(pack.voltage_v * (1 - np.exp(-5)), rel=0.01)
