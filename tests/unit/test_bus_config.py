"""The bus factory and python-can's own configuration: command line > python-can's
configuration (environment, ~/.canrc, ...) > 500 kbit/s."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import can
import pytest

from bms.canbus.bus import BusSpec, open_bus
from bms.cli.common import add_bus_options, bus_spec
from bms.cli.main import main
from bms.errors import ConfigError

_CAN_ENV = ("CAN_INTERFACE", "CAN_CHANNEL", "CAN_BITRATE", "CAN_CONFIG")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of its own, no CAN_* variables, no can.rc, and no /etc/can.conf: only what
    a test writes is python-can's configuration."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    for name in _CAN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(can, "rc", {})
    monkeypatch.setattr(can.util, "CONFIG_FILES", ["~/can.conf", "~/.can", "~/.canrc"])
    return home


def _canrc(home: Path, *lines: str) -> Path:
    path = home / ".canrc"
    path.write_text("\n".join(["[default]", *lines]) + "\n")
    return path


def _cli_spec(*argv: str) -> BusSpec:
    parser = argparse.ArgumentParser()
    add_bus_options(parser)
    return bus_spec(parser.parse_args(list(argv)))


def test_the_bitrate_of_a_canrc_file_is_used(home: Path) -> None:
    _canrc(home, "interface = virtual", "channel = x", "bitrate = 250000")
    spec = _cli_spec().resolved()
    assert (spec.interface, spec.channel, spec.bitrate) == ("virtual", "x", 250000)
    assert spec.describe() == "virtual x 250000 bit/s"
    bus = open_bus(_cli_spec())
    try:
        assert bus.channel_info.endswith("x")
    finally:
        bus.shutdown()
    # the configuration names the interface given: it still gives the rest
    assert _cli_spec("--interface", "virtual").resolved().bitrate == 250000
    # ... but not when it is about another interface
    other = _cli_spec("--interface", "slcan").resolved()
    assert (other.channel, other.bitrate) == (None, 500_000)


def test_the_bitrate_of_the_environment_is_used(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("CAN_INTERFACE", "virtual")
    monkeypatch.setenv("CAN_BITRATE", "250000")
    spec = BusSpec().resolved()
    assert (spec.interface, spec.channel, spec.bitrate) == ("virtual", "vcan0", 250000)
    assert BusSpec().bitrate == 250000
    assert "250000 bit/s" in spec.describe()


def test_the_command_line_bitrate_wins_over_the_configuration(home: Path, monkeypatch) -> None:
    _canrc(home, "interface = virtual", "bitrate = 250000")
    assert _cli_spec("--bitrate", "125000").resolved().bitrate == 125000
    monkeypatch.setenv("CAN_BITRATE", "100000")  # the environment wins over the file
    assert _cli_spec().resolved().bitrate == 100000
    assert _cli_spec("--bitrate", "125000").resolved().bitrate == 125000


def test_without_a_bitrate_anywhere_it_is_500_kbit(home: Path) -> None:
    spec = _cli_spec()
    assert spec.given_bitrate is None and spec.bitrate == 500_000
    resolved = spec.resolved()
    assert (resolved.interface, resolved.channel, resolved.bitrate) == ("virtual", "vcan0", 500_000)
    assert resolved.resolved() == resolved  # resolving again changes nothing
    assert BusSpec("slcan", "/dev/ttyACM0", 250000).resolved().bitrate == 250000


def test_extra_keys_of_the_configuration_reach_the_bus_and_bus_kwarg_wins(home: Path) -> None:
    _canrc(
        home,
        "interface = virtual",
        "receive_own_messages = True",
        "fd = True",
        "data_bitrate = 2000000",
    )
    spec = _cli_spec().resolved()
    assert spec.kwargs == {"receive_own_messages": True, "fd": True, "data_bitrate": 2_000_000}
    bus = open_bus(_cli_spec())
    try:
        assert bus.receive_own_messages is True
    finally:
        bus.shutdown()
    given = _cli_spec("--bus-kwarg", "receive_own_messages=false")
    assert given.resolved().kwargs["receive_own_messages"] is False
    bus = open_bus(given)
    try:
        assert bus.receive_own_messages is False
    finally:
        bus.shutdown()


def test_a_socketcand_configuration_gives_host_and_port(home: Path) -> None:
    _canrc(home, "interface = socketcand", "host = 10.0.0.7", "port = 29999")
    spec = BusSpec().resolved()
    assert spec.kwargs == {"host": "10.0.0.7", "port": 29999}
    assert BusSpec(kwargs={"port": 1234}).resolved().kwargs["port"] == 1234


@pytest.mark.parametrize("bad", ["fast", "0", "-250000", "True", "250000.5"])
def test_a_bad_bitrate_in_the_configuration_is_one_line_naming_its_file(
    home: Path, bad: str
) -> None:
    path = _canrc(home, "interface = virtual", f"bitrate = {bad}")
    with pytest.raises(ConfigError) as info:
        BusSpec().resolved()
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"python-can configuration ({path}): bitrate: must be")
    assert repr(bad) in text or bad in text


def test_a_bad_configuration_is_one_line(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("CAN_BITRATE", "fast")
    with pytest.raises(ConfigError, match=r"^python-can configuration \(CAN_BITRATE\)"):
        BusSpec("virtual").resolved()
    monkeypatch.delenv("CAN_BITRATE")
    monkeypatch.setenv("CAN_INTERFACE", "nosuchbus")
    with pytest.raises(ConfigError, match=r"\(CAN_INTERFACE\): interface: unknown CAN interface"):
        BusSpec().resolved()
    monkeypatch.setenv("CAN_INTERFACE", "virtual")
    monkeypatch.setenv("CAN_CONFIG", "{oops")
    with pytest.raises(ConfigError, match=r"CAN_CONFIG: not valid JSON"):
        BusSpec().resolved()
    monkeypatch.delenv("CAN_CONFIG")
    _canrc(home, "interface = socketcand", "port = abc")
    monkeypatch.delenv("CAN_INTERFACE")
    with pytest.raises(ConfigError, match=r"Port config must be a number"):
        BusSpec().resolved()


def test_run_reports_bus_load_at_the_configured_bitrate(home: Path, capsys) -> None:
    _canrc(home, "interface = virtual", "channel = cfg", "bitrate = 250000")
    assert main(["run", "--duration", "0.1", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "virtual cfg 250000 bit/s" in captured.err
    assert "periods at 250000 bit/s" in captured.out
    assert main(["run", "--duration", "0.1", "--quiet", "--bitrate", "125000"]) == 0
    captured = capsys.readouterr()
    assert "virtual cfg 125000 bit/s" in captured.err
    assert "periods at 125000 bit/s" in captured.out
    # the [can] section of --config, between the two
    toml = home / "pack.toml"
    toml.write_text('[can]\nchannel = "toml"\nbitrate = 1000000\n')
    assert main(["run", "--duration", "0.1", "--quiet", "--config", str(toml)]) == 0
    captured = capsys.readouterr()
    assert "virtual toml 1000000 bit/s" in captured.err
    assert "periods at 1000000 bit/s" in captured.out


def _run_cli(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _CAN_ENV}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "bms.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=home,
    )


def test_the_cli_with_a_bad_configured_bitrate_prints_one_error_line(home: Path) -> None:
    path = _canrc(home, "interface = virtual", "bitrate = fast")
    proc = _run_cli(home, "run", "--duration", "0.1")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: python-can configuration ({path}): bitrate: must be a whole number of "
        "bit/s > 0, got 'fast'"
    ]


def test_an_interface_without_its_driver_is_one_line_without_warnings(home: Path) -> None:
    proc = _run_cli(home, "run", "--interface", "vector", "--duration", "0.1")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: vector: driver not available"), lines


def _toml_spec(tmp_path: Path, toml: str, *argv: str) -> BusSpec:
    """The bus of ``bms-emu run --config FILE`` with ``toml`` in FILE and ``argv``."""
    from bms.config import load_config

    path = tmp_path / "pack.toml"
    path.write_text(toml)
    parser = argparse.ArgumentParser()
    add_bus_options(parser)
    return bus_spec(parser.parse_args(list(argv)), load_config(path))


def test_the_can_section_of_the_configuration_names_the_bus(home: Path, tmp_path: Path) -> None:
    _canrc(home, "interface = virtual", "channel = fromrc", "bitrate = 125000", "fd = True")
    toml = (
        '[can]\ninterface = "virtual"\nchannel = "bench"\nbitrate = 250000\n'
        "[can.options]\nreceive_own_messages = true\n"
    )
    spec = _toml_spec(tmp_path, toml).resolved()
    assert (spec.interface, spec.channel, spec.bitrate) == ("virtual", "bench", 250000)
    # the section's options, then python-can's extra keys where the section is silent
    assert spec.kwargs["receive_own_messages"] is True and spec.kwargs["fd"] is True
    # the command line wins over the section
    spec = _toml_spec(
        tmp_path,
        toml,
        "--channel",
        "cli",
        "--bitrate",
        "500000",
        "--bus-kwarg",
        "receive_own_messages=false",
    ).resolved()
    assert (spec.channel, spec.bitrate, spec.kwargs["receive_own_messages"]) == (
        "cli",
        500000,
        False,
    )
    # a section for another interface is left out whole (its channel is no vcan name)
    spec = _toml_spec(
        tmp_path, '[can]\ninterface = "pcan"\nchannel = "PCAN_USBBUS1"\n', "--interface", "virtual"
    ).resolved()
    assert (spec.interface, spec.channel, spec.bitrate) == ("virtual", "fromrc", 125000)
    # a section in part: the rest from python-can's configuration
    spec = _toml_spec(tmp_path, "[can]\nbitrate = 1000000\n").resolved()
    assert (spec.interface, spec.channel, spec.bitrate) == ("virtual", "fromrc", 1000000)


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("[can]\nbitrate = -1\n", "[can] bitrate: must be >= 0, got -1"),
        ('[can]\nbitrate = "fast"\n', "[can] bitrate: must be an integer, got 'fast'"),
        ("[can]\nspeed = 1\n", "[can]: unknown field 'speed'"),
        ("[can.options]\nx = [1, 2]\n", "[can] options: must be a table of keywords"),
    ],
)
def test_a_bad_can_section_is_one_line(tmp_path: Path, toml: str, says: str) -> None:
    from bms.config import load_config

    path = tmp_path / "pack.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: {says}" or str(err.value).startswith(f"{path}: {says}")
    assert "\n" not in str(err.value)


def test_dbc_check_takes_the_bitrate_as_run_does(home: Path, capsys) -> None:
    _canrc(home, "interface = virtual", "bitrate = 250000")
    assert main(["dbc", "check"]) == 0
    assert "bus load 76.7% at 250000 bit/s" in capsys.readouterr().out
    toml = home / "pack.toml"
    toml.write_text("[can]\nbitrate = 1000000\n")
    assert main(["dbc", "check", "--config", str(toml)]) == 0
    assert "at 1000000 bit/s" in capsys.readouterr().out
    assert main(["dbc", "check", "--config", str(toml), "--bitrate", "500000"]) == 0
    assert "bus load 38.3% at 500000 bit/s" in capsys.readouterr().out
