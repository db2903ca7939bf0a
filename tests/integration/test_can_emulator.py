"""The emulator on a virtual CAN bus: closed loop, values on the bus, periods, determinism."""

from __future__ import annotations

import importlib
import itertools
import pkgutil
from collections import defaultdict
from pathlib import Path

import can
import cantools
import numba
import numpy as np
import pytest

import bms
from bms.canbus.binding import DBC_DIR, load_binding
from bms.canbus.crc import CRC8
from bms.config import Config, PackConfig
from bms.sim.emulator import Emulator
from bms.sim.mission import Mission, Phase

_channels = itertools.count()


def _db() -> cantools.database.can.Database:
    db = cantools.database.can.Database()
    for f in ("bms_vehicle.dbc", "bms_pack.dbc", "charger.dbc"):
        db.add_dbc_file(str(DBC_DIR / f))
    return db


def _drive(current_a: float, seconds: float, ready_s: float = 0.5) -> Mission:
    n = int(seconds / 0.1)
    return Mission("test", [Phase("drive", seconds, np.full(n, current_a), 0.1)], 280.0, ready_s)


@pytest.fixture
def buses():
    """The emulator's bus and a listener on the same virtual channel."""
    ch = f"test-emu-{next(_channels)}"
    emu_bus = can.Bus(interface="virtual", channel=ch, receive_own_messages=False)
    listener = can.Bus(interface="virtual", channel=ch, receive_own_messages=False)
    yield emu_bus, listener
    emu_bus.shutdown()
    listener.shutdown()


def _drain(bus: can.BusABC) -> list[can.Message]:
    out = []
    while (m := bus.recv(0.0)) is not None:
        out.append(m)
    return out


def test_vcu_request_closes_contactors_through_precharge(buses) -> None:
    emu_bus, listener = buses
    db = _db()
    state = db.get_message_by_name("BMS_State")
    with Emulator(bus=emu_bus, mission=_drive(100.0, 20.0)) as emu:
        seen = []
        for _ in range(40):
            emu.run(emu.scheduler.now_s + 0.5)
            for m in _drain(listener):
                if m.arbitration_id == state.frame_id:
                    seen.append(state.decode(m.data)["BmsState"])
        states = [str(s) for s, _ in itertools.groupby(seen)]
        assert states[:3] == ["Standby", "Precharge", "ClosedDrive"]
        assert emu.pack.contactors.closed
        assert emu.pack.current_a == pytest.approx(100.0)
        # precharge took less than its timeout: count the Precharge reports (100 ms each)
        assert 1 <= seen.count("Precharge") <= 10


def test_bus_values_equal_firmware_values_within_one_lsb(buses) -> None:
    emu_bus, listener = buses
    db = _db()
    with Emulator(bus=emu_bus, mission=_drive(150.0, 60.0)) as emu:
        emu.run(30.0)  # stops right after the 100 ms and 1 s frames of t = 30 s
        frames = _drain(listener)
        last = {}
        for m in frames:
            msg = db.get_message_by_frame_id(m.arbitration_id)
            last[msg.name] = msg.decode(m.data, decode_choices=False)
        bms = emu.bms
        soc = bms.soc.pack()
        assert last["BMS_Soc"]["SocMean"] == pytest.approx(100 * soc.mean, abs=0.1)
        assert last["BMS_Soc"]["SocMin"] == pytest.approx(100 * soc.min, abs=0.1)
        assert last["BMS_Soc"]["SocDisplay"] == pytest.approx(100 * soc.display, abs=0.1)
        lim = bms._limits
        assert last["BMS_Limits"]["ChargeCurrentLimit"] == pytest.approx(lim.charge_a, abs=0.1)
        assert last["BMS_Limits"]["DischargeCurrentLimit"] == pytest.approx(
            lim.discharge_a, abs=0.1
        )
        gain = emu.cfg.sensors.current.gain_error  # the shunt's fixed gain error
        assert last["BMS_PackData"]["PackCurrent"] == pytest.approx(150.0 * (1 + gain), abs=0.25)
        # the power is the BMS's voltage times its current, of the same tick as the frame of
        # PackData sent with it (their LSBs, 0.05 V and 0.05 A, give the tolerance)
        pack = last["BMS_PackData"]
        power = pack["PackVoltage"] * pack["PackCurrent"] / 1000.0
        assert power > 50.0
        assert last["BMS_State"]["PackPower"] == pytest.approx(power, abs=0.03)
        # every page of cell voltages carries what the firmware saw when the page went out
        cells = db.get_message_by_name("BMS_CellVoltages")
        n = emu.cfg.pack.series
        node = emu.nodes["bms"]
        snapshots = []
        prepare = node.prepare

        def spy(t, message):
            prepare(t, message)
            if message == "BMS_CellVoltages":
                snapshots.append(node.outputs["cell_voltage_v"].copy())

        node.prepare = spy
        checked = set()
        for _ in range(60):  # one page every 20 ms
            emu.run(emu.scheduler.now_s + 0.02)
            for m in _drain(listener):
                if m.arbitration_id != cells.frame_id:
                    continue
                d = cells.decode(m.data)
                p = d["CellVoltagesPage"]
                seen = snapshots.pop(0)
                for k in range(4):
                    if 4 * p + k < n:
                        assert d[f"CellVoltage{k + 1}"] == pytest.approx(seen[4 * p + k], abs=1e-3)
                        checked.add(4 * p + k)
        assert checked == set(range(n))
        seen = node.outputs["cell_voltage_v"]
        # ... which are the units' readings of the true voltages (sensor error, 1 mV steps)
        np.testing.assert_allclose(seen, emu.pack.group_voltage_v, atol=0.02)


def test_every_message_is_sent_at_its_dbc_period(tmp_path) -> None:
    log = tmp_path / "run.log"
    with Emulator(mission=_drive(50.0, 10.0), log_path=log) as emu:
        emu.run(5.0)
    db = _db()
    times: dict[tuple[int, int], list[float]] = defaultdict(list)
    for m in can.LogReader(str(log)):
        msg = db.get_message_by_frame_id(m.arbitration_id)
        page = 0
        for sig in ("CellVoltagesPage", "TemperaturesPage", "BalancingPage"):
            if any(s.name == sig for s in msg.signals):
                page = msg.decode(m.data, decode_choices=False)[sig]
        times[(m.arbitration_id, page)].append(m.timestamp)
    assert {db.get_message_by_frame_id(k[0]).name for k in times} == {m.name for m in db.messages}
    for (fid, _page), ts in times.items():
        msg = db.get_message_by_frame_id(fid)
        if len(ts) < 3:
            continue
        periods = np.diff(ts)
        np.testing.assert_allclose(periods, msg.cycle_time / 1000.0, atol=1e-6, err_msg=msg.name)


def test_the_same_seed_gives_an_identical_can_log(tmp_path) -> None:
    def run(seed: int, name: str) -> bytes:
        cfg = Config(pack=PackConfig(seed=seed))
        path = tmp_path / name
        with Emulator(cfg, mission=_drive(80.0, 10.0), log_path=path) as emu:
            emu.run(4.0)
        return path.read_bytes()

    a, b, c = run(3, "a.log"), run(3, "b.log"), run(4, "c.log")
    assert a == b
    assert len(a.splitlines()) > 1000
    assert a != c


def test_default_matrix_keeps_bus_load_under_40_percent_for_200_cells() -> None:
    with Emulator() as emu:
        load = emu.dbc_bus_load()
    assert 0.05 < load <= 0.40


def test_the_binding_names_every_message_of_the_dbc_files() -> None:
    b = load_binding(sizes={"cell_voltage_v": 200, "temp_c": 50, "bleed": 200})
    assert set(b.messages) == {m.name for m in _db().messages}
    for m in b.messages.values():
        assert m.period_s is not None, f"{m.name} has no GenMsgCycleTime"
    assert b.warnings == []
    # a unit on every physical signal, a value table on every enumeration
    checked = {"phys": 0, "enum": 0}
    for m in b.messages.values():
        dbc = {s.name: s for s in _db().get_message_by_name(m.name).signals}
        for page in m.pages:
            for slot in page.slots:
                sig = dbc[slot.signal]
                if slot.kind in ("phys", "array"):
                    assert sig.unit, f"{m.name}.{sig.name} has no unit"
                    checked["phys"] += 1
                elif slot.kind == "enum":
                    assert sig.choices, f"{m.name}.{sig.name} has no value table"
                    checked["enum"] += 1
    assert checked["phys"] > 40 and checked["enum"] > 20


def test_bad_frames_are_counted_and_ignored_and_a_bad_vcu_makes_a_fault(buses) -> None:
    emu_bus, tester = buses
    db = _db()
    cmd = db.get_message_by_name("VCU_Command")
    hb = db.get_message_by_name("VCU_Heartbeat")
    from bms.canbus.crc import crc8_sae_j1850

    def frame(msg, values, counter, corrupt=False):
        data = bytearray(msg.encode({**values, "AliveCounter": counter, "Crc": 0}))
        data[7] = crc8_sae_j1850(bytes(data[:7]))
        if corrupt:
            data[7] ^= 0x5A
        return can.Message(arbitration_id=msg.frame_id, is_extended_id=True, data=data)

    with Emulator(nodes=("pack", "bms"), bus=emu_bus) as emu:
        emu.start()
        close = {"ModeRequest": "Drive", "ContactorRequest": "Close", "FaultReset": "No"}
        for k in range(60):  # 3 s of a good vehicle: the contactors close
            tester.send(frame(hb, {"VcuState": "Driving"}, k % 16))
            tester.send(frame(cmd, close, k % 16))
            emu.run(emu.scheduler.now_s + 0.05)
        assert emu.bms.contactors.state.name == "CLOSED_DRIVE"
        # garbage: unknown id, wrong length, error frame, remote frame, repeated counter
        tester.send(can.Message(arbitration_id=0x123, data=b"\x01\x02"))
        tester.send(can.Message(arbitration_id=cmd.frame_id, is_extended_id=True, data=b"\x00"))
        tester.send(can.Message(is_error_frame=True))
        tester.send(
            can.Message(arbitration_id=cmd.frame_id, is_extended_id=True, is_remote_frame=True)
        )
        tester.send(frame(cmd, close, 59 % 16))
        tester.send(frame(cmd, {**close, "ModeRequest": 3}, 60 % 16))  # not in the table
        for _ in range(500):  # a flood of unknown frames
            tester.send(can.Message(arbitration_id=0x7FF, data=b"\xff" * 8))
        emu.run(emu.scheduler.now_s + 0.05)
        errors = emu.link.stats.errors
        assert errors["unknown_id"] == 501
        assert errors["bad_dlc"] == 1
        assert errors["error_frame"] == 1
        assert errors["remote_frame"] == 1
        assert errors["counter_repeat"] == 1
        assert errors["out_of_range"] == 1
        assert emu.nodes["bms"].inputs["mode_request"] is None  # a value it cannot trust
        # now only corrupted commands: the BMS loses its vehicle and opens the contactors
        for k in range(60):
            tester.send(frame(hb, {"VcuState": "Driving"}, (60 + k) % 16, corrupt=True))
            tester.send(frame(cmd, close, (61 + k) % 16, corrupt=True))
            emu.run(emu.scheduler.now_s + 0.05)
        assert errors["bad_crc"] >= 100
        assert "command_timeout" in emu.bms.protections.status.latched
        assert emu.bms.contactors.state.name in ("OPENING", "FAULT")
        emu.run(emu.scheduler.now_s + 1.0)
        assert not emu.pack.contactors.closed


def test_pack_node_opens_contactors_when_the_bms_goes_silent(buses) -> None:
    emu_bus, _ = buses
    with Emulator(nodes=("pack", "bms", "vcu"), bus=emu_bus, mission=_drive(60.0, 30.0)) as emu:
        emu.run(8.0)
        assert emu.pack.contactors.closed
        emu.scheduler.cancel(
            next(t for t in emu.scheduler.tasks if t.name == "BMS_ContactorCommand")
        )
        emu.run(8.2)
        assert not emu.pack.contactors.closed
        assert emu.nodes["pack"].contactor_timeouts >= 1


def test_missing_cell_frames_read_as_invalid_and_fault(buses) -> None:
    emu_bus, _ = buses
    with Emulator(bus=emu_bus, mission=_drive(60.0, 30.0)) as emu:
        emu.run(6.0)
        assert emu.bms.contactors.state.name == "CLOSED_DRIVE"
        emu.scheduler.cancel(next(t for t in emu.scheduler.tasks if t.name == "CMU_CellVoltages"))
        emu.run(9.0)
        assert emu.nodes["bms"].outputs["level_cell_data_timeout"] == "Fault"
        assert "cell_voltage_implausible" in emu.bms.protections.status.latched
        emu.run(11.0)
        assert not emu.pack.contactors.closed


@pytest.mark.parametrize(
    ("message", "values"),
    [("PDU_Current", ("current_a",)), ("PDU_Voltages", ("pack_voltage_v", "bus_voltage_v"))],
)
def test_a_silent_current_or_voltage_frame_reads_not_a_number_after_its_timeout(
    buses, message, values
) -> None:
    """The BMS's 10 ms measurement takes the current and the voltages from their frames
    while they are fresh (50 ms), and not a number once they stop."""
    emu_bus, _ = buses
    with Emulator(bus=emu_bus, mission=_drive(60.0, 30.0)) as emu:
        emu.run(6.0)
        node = emu.nodes["bms"]
        m, _ = node.measurement(emu.scheduler.now_s)
        assert all(np.isfinite(getattr(m, v)) for v in values)
        emu.scheduler.cancel(next(t for t in emu.scheduler.tasks if t.name == message))
        last = node.rx_time[message]
        for after_s, fresh in ((0.04, True), (0.06, False)):
            m, _ = node.measurement(last + after_s)
            assert all(np.isfinite(getattr(m, v)) == fresh for v in values), after_s
        emu.run(7.0)  # 50 ms, then the plausibility checks' 0.5 s
        latched = emu.bms.protections.status.latched
        assert ("current_implausible" in latched) == (message == "PDU_Current")


def test_a_small_pack_runs_end_to_end_with_charger(tmp_path: Path) -> None:
    cfg = Config(pack=PackConfig(series=16, initial_soc=0.6))
    mission = Mission("charge", [Phase("charge", 600.0)], 280.0, ready_s=0.5)
    with Emulator(cfg, mission=mission) as emu:
        res = emu.run(300.0)
    assert res.soc_true["mean"] > 0.6 + 0.5 * 100.0 * 200 / 3600 / 280 - 0.05
    assert emu.nodes["charger"].outputs["charger_state"] in ("ConstantCurrent", "ConstantVoltage")
    assert res.frames["error_total"] == 0


@pytest.mark.parametrize("name", ["CMU_CellVoltages", "CMU_Temperatures", "BMS_BalancingCommand"])
def test_pages_sent_at_once_are_the_frames_sent_one_by_one(name, rng) -> None:
    """The numpy path for arrays in pages gives the bytes of the frame-by-frame path, and the
    receiver decodes the same array from either."""
    with Emulator(mission=_drive(10.0, 10.0)) as emu:
        emu.run(1.0)
        link = emu.link
        tx = link._tx[name]
        bm = tx.bm
        sender = emu.nodes[bm.sender]
        n = emu.sizes[bm.array]
        values = rng.uniform(2.5, 3.6, n) if bm.array != "bleed" else rng.random(n) < 0.3
        if bm.array == "temp_c":
            values = rng.uniform(-20, 60, n)
        values = values.astype(float)
        values[rng.integers(0, n)] = np.nan  # a missing reading goes out as "not available"
        sender.outputs[bm.array] = values
        frames = {}
        got = {}
        for mode in ("batch", "frames"):
            sent = []
            link._put = lambda t, tx, data, sent=sent: sent.append(bytes(data))
            link._put_rows = lambda t, tx, raw, w, sent=sent: sent.extend(
                bytes(raw[i : i + w]) for i in range(0, len(raw), w)
            )
            link.bus_ok = True
            link.writer = object()  # make the link build every frame
            batch = tx.batch
            if mode == "frames":
                tx.batch = None
            tx.count = 5
            receiver = emu.nodes[bm.receivers[0]]
            receiver.arrays[bm.array][:] = -1.0
            for r in link._rx[bm.key].last_counter:
                link._rx[bm.key].last_counter[r] = 4
            link.send(2.0, name)
            tx.batch = batch
            frames[mode] = sent
            got[mode] = receiver.arrays[bm.array].copy()
        link.writer = None
        assert frames["batch"] == frames["frames"]
        assert len(frames["batch"]) == len(bm.pages)
        np.testing.assert_array_equal(got["batch"], got["frames"])
        assert not link.stats.errors


def test_a_pack_that_does_not_fill_its_last_page_works_both_ways(rng) -> None:
    cfg = Config(pack=PackConfig(series=203, initial_soc=0.5))  # 203 = 67*3 + 2, 5*40 + 3
    with Emulator(cfg, mission=_drive(10.0, 10.0)) as emu:
        emu.run(3.0)
        assert emu.link.stats.errors == {}
        v = emu.nodes["bms"].arrays["cell_voltage_v"]
        assert v.size == 203 and np.all(np.abs(v - emu.pack.group_voltage_v) < 0.02)


def test_pages_delivered_at_once_are_checked_like_single_frames() -> None:
    with Emulator(mission=_drive(10.0, 10.0)) as emu:
        emu.run(1.0)
        link = emu.link
        tx = link._tx["CMU_CellVoltages"]
        rx = link._rx[tx.bm.key]
        bms = emu.nodes["bms"]
        bm = tx.bm
        n_pages = tx.batch.n_pages
        cols = {bm.page_signal: np.arange(n_pages), bm.crc: 0}
        cols.update({s.signal: np.full(n_pages, 3.3) for s in bm.pages[0].slots})
        last = rx.last_counter["bms"]
        counters = (last + 1 + np.arange(n_pages)) % 16
        counters[10] = counters[9]  # page 10 repeats the counter of page 9: stale, dropped
        counters[20:] = (counters[20:] + 3) % 16  # three frames lost before page 20
        cols["AliveCounter"] = counters
        cols["CellVoltage1"] = np.full(n_pages, 3.111)
        data = tx.codec.encode_batch(cols)
        data[:, 7] = CRC8[tx.bm.crc_algorithm][1](data, skip=7)
        data[30, 7] ^= 0xFF  # page 30 corrupted
        before = bms.arrays["cell_voltage_v"].copy()
        link._deliver_batch(2.0, rx, bms, data)
        errors = link.stats.errors
        assert errors["bad_crc"] == 1 and errors["counter_repeat"] == 1
        # jumps: 9 -> 11 (10 was the stale repeat), 19 -> 20 (three lost), 29 -> 31 (30 dropped)
        assert errors["counter_jump"] == 3
        got = bms.arrays["cell_voltage_v"]
        assert got[3 * 10] == before[3 * 10] and got[3 * 30] == before[3 * 30]
        assert got[3 * 11] == pytest.approx(3.111) and got[3 * 29] == pytest.approx(3.111)


def test_a_lost_adapter_is_reported_retried_and_the_run_resumes(caplog) -> None:
    from bms.canbus.bus import BusSpec

    ch = f"test-emu-unplug-{next(_channels)}"
    listener = can.Bus(interface="virtual", channel=ch, receive_own_messages=False)
    try:
        with Emulator(bus=BusSpec("virtual", ch), mission=_drive(50.0, 60.0)) as emu:
            emu.run(3.0)
            assert _drain(listener)
            soc_before = emu.pack.soc.copy()
            emu.bus.shutdown()  # the adapter is unplugged
            emu.run(3.2)
            assert emu.link_losses == 1 and not emu.link.bus_ok
            assert "CAN link lost" in caplog.text
            import time

            time.sleep(0.6)  # the first retry comes after 0.5 s of wall time
            emu.run(3.4)
            assert emu.link.bus_ok
            assert "CAN link restored" in caplog.text
            _drain(listener)
            emu.run(4.0)
            assert len(_drain(listener)) > 500  # frames flow again
            assert emu.link.stats.frames_unsent > 0
            assert np.all(emu.pack.soc < soc_before)  # the plant went on discharging
            res = emu.run(4.1)
            assert res.link_losses == 1 and res.link_down_s > 0.5
    finally:
        listener.shutdown()


def test_status_line_reports_time_speed_state_frames_and_errors() -> None:
    with Emulator(mission=_drive(50.0, 30.0)) as emu:
        emu.run(5.0)
        line = emu.status_line()
    assert line.startswith("00:00:05  x")
    speed = float(line.split()[1].lstrip("x").replace(",", ""))
    assert 0.5 < speed < 1e5  # simulated seconds per wall second since the run began
    for part in ("SOC", " V ", " A ", "cell", "ClosedDrive", "fr/s", "load 3", "err 0"):
        assert part in line, line


def test_persistent_memory_is_stored_at_the_end_and_loaded_at_the_next_start(tmp_path) -> None:
    nvm = tmp_path / "bms.nvm"
    with Emulator(mission=_drive(150.0, 60.0), nvm_path=nvm) as emu:
        emu.run(30.0)
        soc_end = emu.bms.soc.soc.copy()
    with Emulator(mission=_drive(0.0, 60.0), nvm_path=nvm) as emu:
        emu.run(1.0)
        assert emu.bms.image.power_on_count == 2
        np.testing.assert_allclose(emu.bms.image.soc, np.clip(soc_end, 0, 1))


def test_no_kernel_compiles_after_the_bus_goes_live() -> None:
    # a first call compiles (or loads) a numba kernel and stalls every frame meanwhile: the
    # warm-up must have called each kernel the running emulator calls, with its types
    modules = [importlib.import_module(m.name) for m in pkgutil.walk_packages(bms.__path__, "bms.")]

    def signatures() -> dict[str, int]:
        return {
            f"{mod.__name__}.{name}": len(fn.signatures)
            for mod in modules
            for name, fn in vars(mod).items()
            if isinstance(fn, numba.core.registry.CPUDispatcher)
        }

    with Emulator(mission=_drive(100.0, 30.0)) as emu:
        emu.start()
        before = signatures()
        emu.run(12.0)  # precharge, drive, every message, an estimation task, balancing
        after = signatures()
    late = {k: v for k, v in after.items() if v != before.get(k, 0)}
    assert late == {}, f"compiled after start: {late}"


def test_the_vcu_gets_only_the_messages_it_reads_and_a_swapped_node_gets_all(buses) -> None:
    emu_bus, listener = buses
    with Emulator(bus=emu_bus, mission=_drive(60.0, 30.0)) as emu:
        link, vcu = emu.link, emu.nodes["vcu"]
        routed = {name for name, tx in link._tx.items() if vcu in tx.readers}
        assert routed == {"BMS_State", "BMS_Limits", "CHG_Status"}
        emu.run(3.0)
        assert set(vcu.rx_time) == routed
        assert vcu.inputs["bms_state"] == "ClosedDrive"
        assert "soc_display_perc" not in vcu.inputs and "cell_voltage_v" not in vcu.arrays
        # every frame still goes onto the bus, delivered here or not
        assert {m.arbitration_id for m in _drain(listener)} >= {
            bm.codec.frame_id for bm in emu.binding.messages.values()
        }
    # a frame from the bus that the vcu does not read still meets its receive checks
    with Emulator(nodes=("pack", "vcu"), bus=emu_bus, mission=_drive(60.0, 30.0)) as emu:
        emu.run(0.5)
        prot = emu.binding.messages["BMS_Protection"]  # CRC-protected, not read by the vcu
        listener.send(can.Message(arbitration_id=prot.codec.frame_id, data=bytes(8)))
        emu.run(0.6)
        assert emu.link.stats.errors["bad_crc"] == 1
        assert "BMS_Protection" not in emu.nodes["vcu"].rx_time
        # a node that reads everything (consumes None), swapped in: routed on the next start
    with Emulator(bus=emu_bus, mission=_drive(60.0, 30.0)) as emu:
        watcher = emu.nodes["vcu"]
        watcher.consumes = None
        emu.run(3.0)
        assert "soc_display_perc" in watcher.inputs and "BMS_CellStats" in watcher.rx_time


def test_frames_from_the_bus_reach_the_emulator_on_virtual_time(buses) -> None:
    from bms.canbus.bus import rx_pending

    emu_bus, tester = buses
    pending = rx_pending(emu_bus)
    assert not pending()
    tester.send(can.Message(arbitration_id=0x7FF, data=b"\x01"))
    assert pending()
    with Emulator(nodes=("pack", "bms"), bus=emu_bus) as emu:
        emu.run(0.5)
        assert not pending() and emu.link.stats.errors["unknown_id"] == 1
        tester.send(can.Message(arbitration_id=0x7FE, data=b"\x02"))
        emu.run(0.52)
        assert emu.link.stats.errors["unknown_id"] == 2
    assert rx_pending(object())() and rx_pending(None)()  # type: ignore[arg-type]


def test_a_run_stops_when_the_mission_ends_and_a_fault_is_seen_on_time() -> None:
    mission = _drive(60.0, 2.0, ready_s=0.5)  # ends when the vcu task sees 2.5 s passed
    with Emulator(mission=mission) as emu:
        summary = emu.run(30.0)
        assert summary.stopped_by == "mission complete"
        assert 2.5 <= summary.simulated_s <= 2.5 + 0.01 + 1e-9  # the next 10 ms housekeeping
        n_events = emu.scheduler.stats.events
        assert emu.advance_to(5.0) is True  # an ended mission stops the next call at once
        assert emu.scheduler.now_s <= 2.5 + 0.02 + 1e-9
        assert emu.scheduler.stats.events - n_events < 20
        # a fault latched now is in the summary at the next housekeeping
        t = emu.scheduler.now_s
        emu.bms.protections.status.latched.add("cell_overvoltage")
        emu.run(t + 0.05)
        assert f"{t + 0.01:.1f} s: cell_overvoltage" in emu.faults_seen
