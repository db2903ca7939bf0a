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
