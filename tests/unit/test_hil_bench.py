"""The HIL bench's own machinery: the device monitor against cantools, fault injection on
frames (drop, delay, corrupt) as the receiving side sees it, and the period helper."""

from __future__ import annotations

import math
from collections import defaultdict

import cantools
import numpy as np
import pytest

from bms.canbus.binding import DBC_DIR
from hil.bench import Bench, HilSetup
from hil.helpers import Device, expect_counters_and_crc, expect_period


@pytest.fixture
def bench():
    b = Bench(HilSetup(trace=False))
    yield b
    b.close_bench()


def _frames(b: Bench) -> dict[str, list[tuple[float, bytes]]]:
    seen: dict[str, list[tuple[float, bytes]]] = defaultdict(list)
    b.emu.link.taps.append(lambda t, bm, fid, ext, data: bm and seen[bm.name].append((t, data)))
    return seen


def test_monitor_values_equal_cantools_decoding_of_the_last_frame(bench) -> None:
    db = cantools.database.Database()
    for f in ("bms_vehicle.dbc", "bms_pack.dbc", "charger.dbc"):
        db.add_dbc_file(str(DBC_DIR / f))
    seen = _frames(bench)
    bench.power_up()
    bench.close()
    bench.vcu.drive(123.0)
    bench.advance(2.0)
    checks = {
        "BMS_State": ("BmsState", "bms_state"),
        "BMS_PackData": ("PackCurrent", "current_a"),
        "BMS_Soc": ("SocMean", "soc_mean_perc"),
        "BMS_Limits": ("DischargeCurrentLimit", "discharge_current_limit_a"),
        "BMS_CellStats": ("MinCellVoltage", "min_cell_voltage_v"),
    }
    for msg, (signal, value) in checks.items():
        ref = db.get_message_by_name(msg).decode(seen[msg][-1][1])[signal]
        got = bench.value(value)
        if isinstance(got, str):
            assert got == str(ref)
        else:
            assert got == pytest.approx(float(ref), rel=1e-12, abs=1e-12)
    # an array from its pages: every cell voltage the device reports, in order
    cells = bench.monitor.array("cell_voltage_v")
    page_msg = db.get_message_by_name("BMS_CellVoltages")
    ref = np.full(cells.size, math.nan)
    for _, data in seen["BMS_CellVoltages"]:
        d = page_msg.decode(data)
        for k in range(4):
            i = 4 * d["CellVoltagesPage"] + k
            if i < ref.size:
                ref[i] = d[f"CellVoltage{k + 1}"]
    np.testing.assert_allclose(cells, ref, rtol=1e-12)


def test_delayed_frames_arrive_exactly_their_delay_later(bench) -> None:
    seen = _frames(bench)
    bench.start()
    bench.advance(0.1)
    t0 = bench.now_s
    bench.faults.delay("PDU_Current", 0.037)
    bench.advance(0.2)
    times = np.array([t for t, _ in seen["PDU_Current"] if t > t0 + 0.037 + 1e-9])
    # sent every 10 ms from t0 on, seen 37 ms after
    expected = t0 + 0.037 + 0.01 * np.arange(1, times.size + 1)
    np.testing.assert_allclose(times, expected, atol=1e-9)


def test_dropped_and_corrupted_frames_are_what_the_receiver_rejects(bench) -> None:
    seen = _frames(bench)
    bench.start()
    bench.advance(0.5)
    n0 = len(seen["PDU_Current"])
    bench.faults.drop("PDU_Current", every=2)
    bench.advance(1.0)
    assert len(seen["PDU_Current"]) - n0 == 50  # 100 due, every second one dropped
    errors = bench.emu.link.stats.errors
    bad0 = errors["bad_crc"]
    bench.faults.clear_frames()
    bench.faults.corrupt("PDU_Voltages", "crc")
    bench.advance(0.5)
    assert errors["bad_crc"] - bad0 == 50  # every one of 50 frames, by the BMS's own checks
    rep0 = errors["counter_repeat"]
    bench.faults.clear_frames()
    bench.faults.corrupt("VCU_Command", "counter")
    bench.advance(0.5)
    assert errors["counter_repeat"] - rep0 >= 9  # a frozen counter: every frame after the first
    short0 = errors["bad_dlc"]
    bench.faults.clear_frames()
    bench.faults.corrupt("VCU_Heartbeat", "dlc")
    bench.advance(0.5)
    assert errors["bad_dlc"] - short0 == 5


def test_faults_on_the_devices_own_message_are_refused(bench) -> None:
    with pytest.raises(ValueError, match="not a message the bench sends"):
        bench.faults.drop("BMS_State")
    with pytest.raises(ValueError, match="use crc, counter or dlc"):
        bench.faults.corrupt("VCU_Command", "bits")


def test_expect_period_sees_a_doubled_period_and_a_silent_message() -> None:
    b = Bench(HilSetup(trace=False, defect="slow-state"))
    try:
        b.power_up()
        b.advance(3.0)
        dut = Device(b)
        expect_period(dut, "BMS_Limits", 0.1)  # the others keep their periods
        expect_counters_and_crc(dut, "BMS_State")
        with pytest.raises(AssertionError, match=r"BMS_State: intervals 200.0\.\.200.0 ms"):
            expect_period(dut, "BMS_State", 0.1)
        for task in b.emu.scheduler.tasks:  # the device stops sending BMS_Limits
            if task.name == "BMS_Limits":
                b.emu.scheduler.cancel(task)
        b.advance(1.0)
        with pytest.raises(AssertionError, match=r"BMS_Limits: no frame for 1\.0"):
            expect_period(dut, "BMS_Limits", 0.1)
    finally:
        b.close_bench()


def test_a_frame_that_does_not_decode_is_counted_not_raised(bench, monkeypatch) -> None:
    bench.power_up()
    codec = bench.emu.binding.messages["BMS_State"].codec

    def broken(data):
        raise ValueError("bad bits")

    monkeypatch.setattr(codec, "decode", broken)  # every receiver of BMS_State sees it
    monkeypatch.setattr(codec, "decode_tuple", broken)  # (the link's receive program)
    bench.advance(1.0)  # the bench and the device run on
    rec = bench.monitor.record("BMS_State")
    assert rec.decode_errors == 10
    # the device's own vehicle controller takes a frame built in its process from the raw
    # values it was built of, not through the decoder (frames from a bus are decoded)
    assert bench.emu.link.stats.errors["decode_error"] == 0
    with pytest.raises(AssertionError, match="10 frames that did not decode"):
        expect_counters_and_crc(Device(bench), "BMS_State")
