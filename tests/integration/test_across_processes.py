"""The emulator seen from another process, as real tools and hardware see it: through
the virtual SLCAN adapter (a pty, python-can's slcan interface over pyserial)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import can
import cantools
import numpy as np

from bms.canbus.binding import DBC_DIR
from bms.canbus.crc import crc8_sae_j1850


def _start(argv: list[str], pattern: str, timeout_s: float = 60.0) -> tuple[subprocess.Popen, str]:
    """Start ``bms-emu`` in a new process; wait for the stdout line matching ``pattern``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bms.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(pattern, line)
        if m:
            return proc, m.group(1)
    proc.kill()
    out, err = proc.communicate(timeout=10)
    raise AssertionError(f"bms-emu did not print {pattern!r}: {out} {err}")


def _stop(proc: subprocess.Popen) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def _vcu_frame(msg, values: dict, counter: int) -> can.Message:
    data = bytearray(msg.encode({**values, "AliveCounter": counter, "Crc": 0}))
    data[7] = crc8_sae_j1850(bytes(data[:7]))
    return can.Message(arbitration_id=msg.frame_id, is_extended_id=True, data=data)


def test_an_slcan_client_in_another_process_sees_and_commands_the_bms(tmp_path: Path) -> None:
    """The emulated pack and BMS run in one process behind the virtual SLCAN adapter; this
    process is the vehicle, through python-can's slcan interface."""
    summary = tmp_path / "s.json"
    proc, tty = _start(
        [
            "run",
            "--nodes",
            "pack,bms",
            "--speed",
            "realtime",
            "--slcan-pty",
            "--quiet",
            "--summary",
            str(summary),
        ],
        r"slcan adapter on (\S+)",
    )
    db = cantools.database.load_file(str(DBC_DIR / "bms_vehicle.dbc"))
    state = db.get_message_by_name("BMS_State")
    cmd = db.get_message_by_name("VCU_Command")
    hb = db.get_message_by_name("VCU_Heartbeat")
    seen: list[str] = []
    try:
        bus = can.Bus(interface="slcan", channel=tty, bitrate=500000, sleep_after_open=0)
        try:
            close = {"ModeRequest": "Drive", "ContactorRequest": "Close", "FaultReset": "No"}
            k = 0
            deadline = time.monotonic() + 20.0
            next_send = 0.0
            while time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_send and k < 10_000:
                    bus.send(_vcu_frame(hb, {"VcuState": "Driving"}, k % 16))
                    bus.send(_vcu_frame(cmd, close, k % 16))
                    k += 1
                    next_send = now + 0.05
                m = bus.recv(0.01)
                if m is not None and m.arbitration_id == state.frame_id:
                    seen.append(str(state.decode(m.data)["BmsState"]))
                    if seen[-1] == "ClosedDrive":
                        break
        finally:
            bus.shutdown()
    finally:
        code, out, err = _stop(proc)
    assert seen and seen[0] in ("Standby", "Precharge")
    assert seen[-1] == "ClosedDrive", seen[-20:]
    assert "Precharge" in seen
    assert code == 130, err
    assert "interrupted" in out


def test_slcan_pty_needs_the_virtual_interface(capsys) -> None:
    from bms.cli.main import main

    assert main(["run", "--slcan-pty", "--interface", "slcan", "--channel", "/dev/null"]) == 2
    assert capsys.readouterr().err.startswith("error: --slcan-pty: needs the virtual interface")


# ------------------------------------------------------------------ through the hub


def _logger(log_file: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "can.logger",
            "-i",
            "socketcand",
            "-c",
            "vcan0",
            "-f",
            str(log_file),
            # last: it takes every argument after it
            "--bus-kwargs",
            "host=127.0.0.1",
            f"port={port}",
            "tcp_tune=True",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once its bus is open
    assert line.startswith("Connected to SocketCanDaemonBus"), line
    return proc


def test_can_logger_in_another_process_records_the_emulator_through_the_hub(
    tmp_path: Path,
) -> None:
    from bms.canbus.bus import BusSpec
    from bms.canbus.hub import Hub
    from bms.sim.emulator import Emulator

    log_file = tmp_path / "emulator.asc"
    with Hub(port=0) as hub:
        port = hub.address[1]
        logger = _logger(log_file, port)
        try:
            spec = BusSpec("socketcand", "vcan0", kwargs={"port": port})
            with Emulator(bus=spec, speed=4.0) as emu:
                res = emu.run(4.0)
            time.sleep(0.5)  # the logger reads the last frames from its socket
        finally:
            logger.send_signal(signal.SIGINT)  # can.logger writes its file on SIGINT
            _, err = logger.communicate(timeout=20)
    assert res.frames["error_total"] == 0 and res.link_losses == 0
    frames = list(can.LogReader(str(log_file)))
    assert len(frames) == res.frames["frames_sent"], err
    db = cantools.database.can.Database()
    for f in ("bms_vehicle.dbc", "bms_pack.dbc", "charger.dbc"):
        db.add_dbc_file(str(DBC_DIR / f))
    states = []
    for m in frames:
        d = db.decode_message(m.arbitration_id, m.data)
        if "BmsState" in d:
            states.append(str(d["BmsState"]))
    assert states[0] == "Standby" and "ClosedDrive" in states


def test_a_hub_that_stops_mid_run_is_survived_and_rejoined(caplog) -> None:
    from bms.canbus.bus import BusSpec
    from bms.canbus.hub import Hub
    from bms.sim.emulator import Emulator

    hub = Hub(port=0)
    hub.start()
    port = hub.address[1]
    spec = BusSpec("socketcand", "vcan0", kwargs={"port": port})
    try:
        with Emulator(bus=spec, speed=2.0) as emu:
            emu.run(2.0)
            assert emu.link.bus_ok
            hub.stop()  # the other end goes away
            emu.run(4.0)
            assert emu.link_losses == 1 and not emu.link.bus_ok
            assert "CAN link lost" in caplog.text
            soc = emu.pack.soc.copy()
            hub = Hub(port=port)  # it comes back on the same port
            hub.start()
            emu.run(8.0)
            assert emu.link.bus_ok, caplog.text
            assert "CAN link restored" in caplog.text
            before = hub.stats.frames_in
            emu.run(9.0)
            assert hub.stats.frames_in > before + 500  # frames flow again
            assert emu.scheduler.now_s == 9.0  # the emulator never stopped
            assert np.all(emu.pack.soc <= soc)
    finally:
        hub.stop()


def test_an_unplugged_slcan_adapter_is_survived_and_rejoined(tmp_path: Path, caplog) -> None:
    """The emulator talks to a USB-CAN adapter (the virtual one, in another process); the
    adapter goes away and comes back at the same path."""
    from bms.canbus.bus import BusSpec
    from bms.sim.emulator import Emulator

    link = tmp_path / "ttyBMS"
    argv = ["adapter", "--interface", "virtual", "--channel", "unplug", "--link", str(link)]
    adapter, _ = _start(argv, r"slcan adapter on (\S+)")
    try:
        spec = BusSpec("slcan", str(link), 500000)
        with Emulator(bus=spec, speed=2.0) as emu:
            emu.run(1.0)
            assert emu.link.bus_ok
            _stop(adapter)  # unplugged
            emu.run(3.0)
            assert emu.link_losses == 1 and not emu.link.bus_ok, caplog.text
            adapter, _ = _start(argv, r"slcan adapter on (\S+)")  # plugged in again
            emu.run(8.0)
            assert emu.link.bus_ok, caplog.text
            assert "CAN link restored" in caplog.text
            assert emu.scheduler.now_s == 8.0
    finally:
        _stop(adapter)
