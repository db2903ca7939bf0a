"""``bms-emu run`` and ``bms-emu dbc``: the emulator from the command line."""

from __future__ import annotations

import gc
import importlib.util
import json
import re
import socket
import subprocess
import sys

import can
import cantools
import pytest

from bms.canbus.binding import DBC_DIR
from bms.canbus.bus import BusSpec, open_bus
from bms.cli.main import main
from bms.cli.run import parse_speed
from bms.errors import CanLinkError, ConfigError


def test_run_writes_summary_and_a_log_that_decodes(tmp_path, capsys) -> None:
    summary = tmp_path / "s.json"
    log = tmp_path / "run.asc"
    argv = ["run", "--duration", "20", "--summary", str(summary), "--log", str(log), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "duration reached" in out and "bus load" in out
    s = json.loads(summary.read_text())
    assert s["simulated_s"] == pytest.approx(20.0)
    assert s["speed_factor"] > 1.0
    assert s["speed_factor"] == pytest.approx(s["simulated_s"] / s["wall_s"], rel=0.02)
    assert s["frames_sent"] > 20 * 1000
    assert s["frames_received"] == 0 and s["faults_seen"] == [] and s["errors"] == {}
    assert s["error_total"] == 0
    assert s["nodes"] == ["pack", "bms", "vcu", "charger"]
    assert set(s["soc_true"]) == {"min", "mean", "max"} and s["soc_estimated"]
    assert s["bus_load_dbc"] <= 0.40
    db = cantools.database.can.Database()
    for f in ("bms_vehicle.dbc", "bms_pack.dbc", "charger.dbc"):
        db.add_dbc_file(str(DBC_DIR / f))
    frames = list(can.LogReader(str(log)))
    assert len(frames) == s["frames_sent"]
    for m in frames[:2000]:
        db.decode_message(m.arbitration_id, m.data)
    assert frames[-1].timestamp - frames[0].timestamp == pytest.approx(20.0, abs=0.011)


def test_run_with_a_real_time_clock_keeps_the_periods(tmp_path) -> None:
    summary = tmp_path / "s.json"
    argv = ["run", "--duration", "1.5", "--speed", "realtime", "--quiet", "--summary", str(summary)]
    assert main(argv) == 0
    s = json.loads(summary.read_text())
    assert s["wall_s"] == pytest.approx(1.5, abs=0.4)
    assert s["frames_sent"] == pytest.approx(1.5 * 1194, rel=0.1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--interface", "nosuchbus"], "error: unknown CAN interface 'nosuchbus'"),
        (["run", "--nodes", "pack,toaster"], "error: --nodes: unknown node toaster"),
        (["run", "--speed", "fast"], "error: --speed: must be max, realtime or a factor"),
        (["run", "--log", "x.txt"], "error: --log: unknown log format .txt"),
        (["run", "--profile", "moon"], "error: --profile: unknown 'moon'"),
        (["run", "--profile", "constant"], "error: --profile constant needs --current"),
        (["run", "--duration", "-3"], "error: --duration: must be > 0 s"),
        (["run", "--bus-kwarg", "oops"], "error: --bus-kwarg: expected KEY=VALUE"),
        (["run", "--summary", "/nonexistent/s.json"], "error: --summary: the folder of"),
        (["run", "--bitrate", "0"], "error: --bitrate: must be > 0"),
        (
            ["run", "--interface", "slcan", "--channel", "/dev/nonexistent-tty"],
            "error: cannot open slcan channel '/dev/nonexistent-tty'",
        ),
        (["run", "--interface", "pcan"], "error: pcan: driver not available"),
        (["run", "--interface", "kvaser"], "error: kvaser: driver not available"),
        (["run", "--interface", "gs_usb"], "error: gs_usb: driver not available"),
        pytest.param(
            ["run", "--log", "x.mf4", "--duration", "1"],
            "error: --log: cannot write x.mf4: .mf4 needs the asammdf package (pip install",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("asammdf") is not None,
                reason="asammdf is installed: .mf4 logs can be written, no error to show",
            ),
            id="mf4-without-asammdf",
        ),
    ],
)
def test_bad_run_arguments_print_one_error_line(argv, message, capsys, caplog) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert err.count("\n") == 1 and "Traceback" not in err
    gc.collect()  # a bus opened before the error is shut down, not left to its finalizer
    assert "not properly shut down" not in caplog.text


def test_socketcan_without_af_can_or_vcan_says_what_to_do() -> None:
    if hasattr(socket, "AF_CAN"):
        try:
            s = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
            s.close()
        except OSError:
            pass
        else:
            pytest.skip("this kernel has SocketCAN; the missing-AF_CAN message cannot be shown")
    with pytest.raises(CanLinkError, match=r"no SocketCAN|no such CAN device"):
        open_bus(BusSpec("socketcan", "vcan0"))


def test_python_can_configuration_is_used_when_no_interface_is_given(monkeypatch) -> None:
    monkeypatch.setenv("CAN_INTERFACE", "virtual")
    monkeypatch.setenv("CAN_CHANNEL", "from-env")
    spec = BusSpec().resolved()
    assert (spec.interface, spec.channel) == ("virtual", "from-env")
    bus = open_bus(BusSpec())
    try:
        assert bus.channel_info.endswith("from-env")
    finally:
        bus.shutdown()


def test_parse_speed() -> None:
    assert parse_speed("max") is None
    assert parse_speed("realtime") == 1.0
    assert parse_speed("10x") == 10.0
    with pytest.raises(ConfigError):
        parse_speed("0")


def test_dbc_check_and_dump(capsys) -> None:
    assert main(["dbc", "check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and "19 messages from 3 DBC files" in out
    assert main(["dbc", "dump"]) == 0
    out = capsys.readouterr().out
    assert "CMU_CellVoltages" in out and "0x18FF4090x" in out
    assert "cell_voltage_v" in out and "67 pages" in out


def test_dbc_check_refuses_a_bitrate_of_zero_and_judges_the_bus_load(capsys) -> None:
    for bitrate in ("0", "-5"):  # not a division by zero
        assert main(["dbc", "check", "--bitrate", bitrate]) == 2
        err = capsys.readouterr().err
        assert err == f"error: --bitrate: must be > 0, got {bitrate}\n"
    # the built-in matrix of a 200-cell pack: about 38 % at 500 kbit/s, 77 % at 250, 192 % at 100
    assert main(["dbc", "check", "--bitrate", "100000"]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.startswith("error: ") and cap.err.count("\n") == 1
    assert re.search(r"bus load \d{3,}\.\d% at 100000 bit/s", cap.err), cap.err
    assert "does not fit" in cap.err and "higher --bitrate or longer" in cap.err
    assert main(["dbc", "check", "--bitrate", "250000"]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("ok: ") and "at 250000 bit/s" in cap.out
    assert cap.err.startswith("warning: ") and cap.err.count("\n") == 1
    assert "above the 40% design limit" in cap.err and "at 250000 bit/s" in cap.err
    assert main(["dbc", "check"]) == 0  # 500 kbit/s: within the design limit, no warning
    assert capsys.readouterr().err == ""


def test_dbc_check_of_a_broken_binding_lists_problems_and_exits_2(tmp_path, capsys) -> None:
    f = tmp_path / "b.toml"
    f.write_text(
        f'dbc = ["{DBC_DIR / "bms_vehicle.dbc"}"]\n[nodes]\nbms = "BMS"\n'
        '[message.BMS_Soc.signals]\nSocMean = "soc_mean_perc"\nSocMin = "pack_voltage_v"\n'
    )
    assert main(["dbc", "check", str(f), "--nodes", "bms"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {f}: ")
    assert "unit mismatch" in err and "'SocDisplay' is transmitted but bound to nothing" in err


def test_run_in_a_fresh_process_stops_cleanly_on_ctrl_c(tmp_path) -> None:
    log = tmp_path / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bms.cli.main", "run", "--log", str(log), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    import signal
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or log.stat().st_size < 100_000):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in out
    lines = log.read_text().splitlines()
    assert len(lines) > 1000
    assert all(line.startswith("(") and "#" in line for line in lines)  # every line complete


def _vcan0_available() -> str:
    """Empty when a vcan0 SocketCAN interface can be opened here, else the reason."""
    if not hasattr(socket, "AF_CAN"):
        return "this Python has no AF_CAN"
    try:
        s = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
    except OSError:
        return "this kernel has no SocketCAN (AF_CAN); run on Linux with `make vcan`"
    try:
        s.bind(("vcan0",))
    except OSError:
        return "no vcan0 interface; create it with `make vcan`"
    finally:
        s.close()
    return ""


@pytest.mark.skipif(bool(_vcan0_available()), reason=_vcan0_available() or "vcan0 present")
def test_emulator_on_socketcan_vcan0_is_seen_by_another_socket() -> None:
    from bms.sim.emulator import Emulator

    watch = can.Bus(interface="socketcan", channel="vcan0")
    try:
        with Emulator(bus=BusSpec("socketcan", "vcan0")) as emu:
            emu.run(2.0)
        frames = []
        while (m := watch.recv(0.0)) is not None:
            frames.append(m)
        assert len(frames) > 1000 and all(m.is_extended_id for m in frames)
    finally:
        watch.shutdown()


def test_a_port_without_permission_names_the_dialout_group(monkeypatch) -> None:
    """Root (this machine) may open every port, so the refusal is raised where the serial
    port would raise it."""

    def refuse(*args, **kwargs):
        err = PermissionError(13, "Permission denied: '/dev/ttyACM0'")
        raise can.CanInitializationError("could not open port /dev/ttyACM0") from err

    monkeypatch.setattr(can, "Bus", refuse)
    with pytest.raises(CanLinkError, match="dialout group") as exc:
        open_bus(BusSpec("slcan", "/dev/ttyACM0"))
    assert "\n" not in str(exc.value)
