"""Estimation: SOC against the plant's truth, pack voltage and current against the sensors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bms.firmware.nvm import NvmImage, PersistentMemory
from bms.sim.profiles import city_bus_drive
from hil import spec
from hil.bench import Bench

ROUTE_S = 5 * 3600.0  # the city-bus day: 5 h of route, 30 min parked, depot charge, 30 min


def _store_soc(bench: Bench, soc: float) -> None:
    """What the emulated device remembers from its last run (its persistent memory)."""
    nvm = bench.emu.bms.nvm if bench.emu.bms is not None else None
    assert nvm is not None, "the emulated device has no persistent memory here"
    n = bench.cfg.pack.series
    PersistentMemory(nvm.path, n).save(NvmImage(n_groups=n, soc=[soc] * n))


def _soc_error(bench: Bench) -> float:
    rep = bench.value("soc_mean_perc")
    if rep is None or not math.isfinite(rep):
        return math.nan
    return float(rep) - 100.0 * float(bench.plant.soc.mean())


def _charge_to_full(bench: Bench, max_s: float) -> float:
    """Depot charge: Charge mode until the device stops asking for current (or ``max_s``).
    Closing may wait for the device's weld check after the last opening (10 s here)."""
    bench.close("Charge", timeout_s=20.0)
    t0 = bench.now_s
    bench.advance(60.0)
    bench.wait_for(
        lambda: not bench.value("charge_enable") or bench.value("charge_current_request_a") < 1.0,
        max_s,
        "the device ending the depot charge",
        step_s=1.0,
        show=("charge_current_request_a", "soc_mean_perc"),
    )
    bench.open()
    return bench.now_s - t0


def _play_day(bench: Bench, route_s: float, full: bool, errors: list[float]) -> None:
    """The route for ``route_s`` (then, for the whole day, park, depot charge, park),
    sampling the SOC error every second of it."""
    bench.close()
    bench.vcu.play(bench.now_s, city_bus_drive(ROUTE_S, 0.1, bench.one_c_a, seed=0), 0.1)
    end = bench.now_s + route_s
    while bench.now_s < end - 1e-9:
        bench.advance(min(1.0, end - bench.now_s))
        errors.append(_soc_error(bench))
    bench.vcu.drive(0.0)
    if full:
        bench.open()
        bench.advance(1800.0)
        _charge_to_full(bench, 6 * 3600.0)
        bench.advance(1800.0)
        errors.append(_soc_error(bench))


@pytest.mark.requirement(
    "EST-1",
    f"Over a city-bus day the reported SOC stays within {spec.SOC_TOLERANCE_PERC} % of the "
    "pack's true SOC (started with a correct stored SOC).",
)
@pytest.mark.emulated_only("the device's stored SOC must match the pack: set it by hand")
def test_soc_within_3_percent_over_a_city_bus_day(bench, dut, hil_setup, figures) -> None:
    _store_soc(bench, float(bench.plant.soc.mean()))
    dut.power_up()
    route = ROUTE_S if hil_setup.day_s is None else min(hil_setup.day_s, ROUTE_S)
    errors: list[float] = []
    _play_day(bench, route, hil_setup.day_s is None, errors)
    err = np.asarray(errors)
    assert err.size and np.all(np.isfinite(err)), "the device did not report its SOC throughout"
    worst = float(np.max(np.abs(err)))
    figures["route played"] = f"{route:.0f} s" + (" + charge" if hil_setup.day_s is None else "")
    figures["worst SOC error"] = f"{worst:.2f} %"
    figures["RMS SOC error"] = f"{float(np.sqrt(np.mean(err**2))):.2f} %"
    assert worst <= spec.SOC_TOLERANCE_PERC, (
        f"reported SOC off by up to {worst:.2f} % (limit {spec.SOC_TOLERANCE_PERC} %)"
    )


@pytest.mark.requirement(
    "EST-2",
    "Started with a stored SOC 20 % below the truth, the reported SOC is within "
    f"{spec.SOC_RECOVERY_PERC} % of the truth at the end of the depot charge.",
)
@pytest.mark.emulated_only("the device's stored SOC must be set 20 % off by hand")
def test_soc_recovers_from_a_20_percent_initial_error(bench, dut, clock, figures) -> None:
    bench.plant.set_soc(0.85)
    _store_soc(bench, 0.65)
    dut.power_up()
    start = _soc_error(bench)
    figures["initial error"] = f"{start:.1f} %"
    assert abs(start + 20.0) < 2.0, f"the device started {start:.1f} % off, not -20 %"
    errors: list[float] = []
    _play_day(bench, 120.0, False, errors)
    bench.open()
    took = _charge_to_full(bench, 3 * 3600.0)
    clock.advance(60.0)
    end = _soc_error(bench)
    figures["charge"] = f"{took / 60:.0f} min"
    figures["error at the end"] = f"{end:.2f} %"
    assert abs(end) <= spec.SOC_RECOVERY_PERC, (
        f"reported SOC still {end:.2f} % off after the depot charge "
        f"(limit {spec.SOC_RECOVERY_PERC} %)"
    )


@pytest.mark.requirement(
    "EST-3",
    "Reported pack voltage and current match the truth within the sensors' accuracy "
    f"(voltage +/-({spec.PACK_VOLTAGE_ACCURACY[0]:.0%} + {spec.PACK_VOLTAGE_ACCURACY[1]:g} V), "
    f"current +/-({spec.CURRENT_ACCURACY[0]:.1%} + {spec.CURRENT_ACCURACY[1]:g} A)).",
)
def test_pack_voltage_and_current_within_sensor_accuracy(dut, vcu, plant, clock, figures) -> None:
    dut.power_up()
    dut.close()
    rel_v, abs_v = spec.PACK_VOLTAGE_ACCURACY
    rel_i, abs_i = spec.CURRENT_ACCURACY
    worst_v = worst_i = 0.0
    for amps in (0.0, 100.0, 250.0, -100.0, 400.0):
        vcu.drive(amps)
        clock.advance(1.0)
        for _ in range(10):
            clock.advance(0.1)
            v_true, i_true = plant.voltage_v, plant.current_a
            v_rep, i_rep = dut.value("pack_voltage_v"), dut.value("current_a")
            tol_v = rel_v * abs(v_true) + abs_v
            tol_i = rel_i * abs(i_true) + abs_i
            assert abs(v_rep - v_true) <= tol_v, (
                f"at {amps:g} A: pack voltage {v_rep:.2f} V reported, {v_true:.2f} V true "
                f"(+/- {tol_v:.2f} V)"
            )
            assert abs(i_rep - i_true) <= tol_i, (
                f"at {amps:g} A: current {i_rep:.2f} A reported, {i_true:.2f} A true "
                f"(+/- {tol_i:.2f} A)"
            )
            worst_v = max(worst_v, abs(v_rep - v_true))
            worst_i = max(worst_i, abs(i_rep - i_true))
    figures["worst voltage error"] = f"{worst_v:.2f} V"
    figures["worst current error"] = f"{worst_i:.2f} A"


@pytest.mark.requirement(
    "EST-4",
    "A cell group with an internal short (10 mOhm) is reported as the lowest cell group "
    "within 2 s, and the temperature sensor on it as the hottest within 60 s.",
)
def test_reports_point_to_a_cell_with_an_internal_short(dut, faults, plant, clock, figures):
    group = 77
    sensor = int(np.flatnonzero(plant.sensors.temp_sensor_cells // plant.n_parallel == group)[0])
    dut.power_up()
    faults.internal_short(plant.cell_index(group), 0.01)
    took = clock.wait_for(
        lambda: dut.value("min_cell_group") == group + 1,
        2.0,
        f"group {group + 1} (1-based) reported as the lowest",
        show=("min_cell_group", "min_cell_voltage_v"),
    )
    figures["lowest group"] = f"after {took:.1f} s"
    took = clock.wait_for(
        lambda: dut.value("max_temp_sensor") == sensor + 1,
        60.0,
        f"sensor {sensor + 1} (1-based) reported as the hottest",
        show=("max_temp_sensor", "max_temp_c"),
    )
    figures["hottest sensor"] = f"after {took:.1f} s, {dut.value('max_temp_c'):.1f} degC"
