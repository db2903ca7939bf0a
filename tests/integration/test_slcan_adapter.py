"""The virtual SLCAN adapter: a pty that python-can's ``slcan`` (and any SLCAN tool)
opens like /dev/ttyACM0, bridged to a python-can bus."""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import can
import cantools
import pytest

from bms.canbus.binding import DBC_DIR
from bms.canbus.slcan_device import SlcanDevice
from bms.cli import adapter as adapter_cli
from bms.errors import CanLinkError, ConfigError

BEL = "\x07"


def wait_for(predicate, timeout_s: float = 5.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Host:
    """The host's end of the tty, opened raw and non-blocking as pyserial does."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self._buf = bytearray()
        self._tokens: list[str] = []

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                select.select([], [self.fd], [], 1.0)

    def send(self, *lines: str) -> None:
        self.write("".join(line + "\r" for line in lines).encode())

    def replies(self, n: int, timeout_s: float = 3.0) -> list[str]:
        """The next ``n`` replies/frames: text before a CR, or BEL."""
        end = time.monotonic() + timeout_s
        while len(self._tokens) < n:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"wanted {n} replies, got {self._tokens!r}")
            if select.select([self.fd], [], [], left)[0]:
                self._take(os.read(self.fd, 65536))
        out, self._tokens = self._tokens[:n], self._tokens[n:]
        return out

    def until(self, prefix: str, limit: int = 20_000) -> tuple[list[str], str]:
        """Read up to the first line starting with ``prefix``: (what came before, that line)."""
        seen: list[str] = []
        while len(seen) < limit:
            (token,) = self.replies(1)
            if token.startswith(prefix):
                return seen, token
            seen.append(token)
        raise AssertionError(f"no {prefix!r}... in {limit} lines")

    def ask(self, line: str) -> str:
        self.send(line)
        return self.replies(1)[0]

    def _take(self, data: bytes) -> None:
        for b in data:
            if b == 0x0D:
                self._tokens.append(self._buf.decode())
                self._buf.clear()
            elif b == 0x07:
                self._tokens.append(BEL)
            else:
                self._buf.append(b)

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Rig:
    dev: SlcanDevice
    bus: can.BusABC  # the test's own instance on the device's virtual channel
    channel: str


@pytest.fixture
def rig() -> Iterator[Rig]:
    channel = f"slcan-test-{uuid.uuid4().hex[:8]}"
    # preserve_timestamps: the test bus sees the device's stamps, not the virtual bus's
    dev_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    test_bus = can.Bus(interface="virtual", channel=channel)
    dev = SlcanDevice(dev_bus)
    try:
        dev.start()
        yield Rig(dev, test_bus, channel)
    finally:
        dev.stop()
        dev_bus.shutdown()
        test_bus.shutdown()


@pytest.fixture
def host(rig: Rig) -> Iterator[Host]:
    h = Host(rig.dev.tty_path)
    try:
        yield h
    finally:
        h.close()


def frame(m: can.Message) -> tuple[int, bool, bool, int, bytes]:
    return (m.arbitration_id, m.is_extended_id, m.is_remote_frame, m.dlc, bytes(m.data))


def recv_all(bus: can.BusABC, n: int, timeout_s: float = 3.0) -> list[can.Message]:
    out: list[can.Message] = []
    end = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < end:
        msg = bus.recv(timeout=0.05)
        if msg is not None:
            out.append(msg)
    return out


CLIENT = textwrap.dedent(
    """
    import json, sys
    import can, cantools

    path, dbc = sys.argv[1:3]
    soc = cantools.database.load_file(dbc).get_message_by_name("BMS_Soc")
    with can.Bus(interface="slcan", channel=path, bitrate=500000, sleep_after_open=0) as bus:
        decoded = []
        while len(decoded) < 3:
            msg = bus.recv(timeout=10)
            if msg is None:
                sys.exit("no BMS_Soc frame within 10 s")
            if msg.arbitration_id == soc.frame_id and msg.is_extended_id:
                decoded.append(soc.decode(msg.data))
        bus.send(can.Message(arbitration_id=0x123, data=[1, 2, 3], is_extended_id=False))
        bus.send(can.Message(arbitration_id=0x18FF50E5, data=bytes(8), is_extended_id=True))
        bus.send(can.Message(arbitration_id=0x7FF, is_remote_frame=True, dlc=2,
                             is_extended_id=False))
        print(json.dumps({"decoded": decoded, "version": bus.get_version(2)}), flush=True)
    """
)


def test_python_can_slcan_client_in_another_process_decodes_bus_frames_and_sends_back(
    rig: Rig, tmp_path
) -> None:
    db = cantools.database.load_file(str(DBC_DIR / "bms_vehicle.dbc"))
    soc = db.get_message_by_name("BMS_Soc")
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    values = [
        {"SocDisplay": 50.0 + i, "SocMin": 48.0, "SocMax": 52.5, "SocMean": 50.1, "Soh": 97.5,
         "Soe": 123.4}
        for i in range(3)
    ]  # fmt: skip
    with subprocess.Popen(
        [sys.executable, str(script), rig.dev.tty_path, str(DBC_DIR / "bms_vehicle.dbc")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            wait_for(lambda: rig.dev.is_open or proc.poll() is not None, 15, "the client's O")
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            for v in values:
                rig.bus.send(
                    can.Message(
                        arbitration_id=soc.frame_id, data=soc.encode(v), is_extended_id=True
                    )
                )
            got = recv_all(rig.bus, 3, timeout_s=15)
            out, err = proc.communicate(timeout=15)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    result = json.loads(out)
    for want, dec in zip(values, result["decoded"], strict=True):
        for name, value in want.items():
            assert dec[name] == pytest.approx(value, abs=0.06), name
    assert result["version"] == [10, 13]
    assert [frame(m) for m in got] == [
        (0x123, False, False, 3, b"\x01\x02\x03"),
        (0x18FF50E5, True, False, 8, bytes(8)),
        (0x7FF, False, True, 2, b""),
    ]
    wait_for(lambda: not rig.dev.host_connected, what="the hangup")
    s = rig.dev.stats
    assert (s.frames_to_host, s.frames_from_host, s.bad_lines, s.errors) == (3, 3, 0, 0)


def test_standard_extended_remote_and_fd_frames_pass_both_ways(rig: Rig, host: Host) -> None:
    assert host.ask("O") == ""
    before = time.time()
    host.send(
        "t12321122", "T1ABCDEF08" + "00112233445566FF", "r7FF3", "R000000010", "d0019" + "AB" * 12
    )
    assert host.replies(5) == ["z", "Z", "z", "Z", "z"]
    got = recv_all(rig.bus, 5)
    assert [frame(m) for m in got] == [
        (0x123, False, False, 2, b"\x11\x22"),
        (0x1ABCDEF0, True, False, 8, bytes.fromhex("00112233445566FF")),
        (0x7FF, False, True, 3, b""),
        (0x00000001, True, True, 0, b""),
        (0x001, False, False, 12, b"\xab" * 12),
    ]  # fmt: skip
    assert got[4].is_fd
    after = time.time()
    assert all(before <= m.timestamp <= after for m in got)  # the device's clock

    rig.bus.send(can.Message(arbitration_id=0x1, data=b"", is_extended_id=False))
    rig.bus.send(can.Message(arbitration_id=0x1FFFFFFF, data=b"\xde\xad", is_extended_id=True))
    rig.bus.send(
        can.Message(arbitration_id=0x555, is_remote_frame=True, dlc=8, is_extended_id=False)
    )
    rig.bus.send(can.Message(arbitration_id=0x18DAF1, is_remote_frame=True, dlc=1))
    rig.bus.send(can.Message(arbitration_id=0x10, is_extended_id=False, is_fd=True,
                             bitrate_switch=True, data=bytes(range(16))))  # fmt: skip
    rig.bus.send(can.Message(arbitration_id=0x10, is_error_frame=True))  # not passed
    assert host.replies(5) == [
        "t0010",
        "T1FFFFFFF2DEAD",
        "r5558",
        "R0018DAF11",
        "b010A" + bytes(range(16)).hex().upper(),
    ]
    s = rig.dev.stats
    assert (s.frames_from_host, s.frames_to_host, s.bad_lines, s.refused) == (5, 5, 0, 0)


def test_version_serial_status_bitrate_listen_only_and_timestamps(rig: Rig, host: Host) -> None:
    assert host.ask("V") == "V1013"
    assert host.ask("v") == "v1013"
    assert host.ask("N") == "NBMS1"
    assert host.ask("F") == "F00"
    assert host.ask("C") == ""  # closing a closed channel is fine
    assert host.ask("S6") == ""
    assert rig.dev.bitrate == 500_000
    assert host.ask("s031C") == "" and rig.dev.btr == "031C"
    assert host.ask("Z1") == ""
    assert host.ask("L") == ""  # listen only: frames come, none go
    assert host.ask("t1230") == BEL
    assert host.ask("S4") == BEL  # no bitrate change while open
    rig.bus.send(can.Message(arbitration_id=0x123, data=b"\xaa\xbb", is_extended_id=False))
    sent_ms = time.time() * 1000
    (frame,) = host.replies(1)
    assert frame[:9] == "t1232AABB" and len(frame) == 13
    stamp = int(frame[9:], 16)
    assert 0 <= stamp < 60_000
    assert abs((stamp - sent_ms + 30_000) % 60_000 - 30_000) < 1000
    assert host.ask("O") == BEL  # already open, listen-only
    assert host.ask("C") == "" and host.ask("Z0") == "" and host.ask("O") == ""
    rig.bus.send(can.Message(arbitration_id=0x123, data=b"\xaa\xbb", is_extended_id=False))
    assert host.replies(1) == ["t1232AABB"]
    assert host.ask("t1230") == "z"
    assert recv_all(rig.bus, 1)[0].arbitration_id == 0x123
    s = rig.dev.stats
    assert (s.refused, s.bad_lines, s.frames_from_host) == (3, 0, 1)


BAD_LINES = [
    ("t12G0", "bad hex"),
    ("t123211", "wrong length"),
    ("t12310011", "wrong length"),
    ("t1239" + "00" * 9, "DLC > 8"),
    ("t8000", "id out of range"),
    ("T200000000", "id out of range"),
    ("r12", "wrong length"),
    ("r1231AA", "wrong length"),
    ("Q", "unknown command"),
    ("S", "bad bitrate"),
    ("Vx", "wrong length"),
    ("Z2", "bad timestamp switch"),
    ("t1 20", "bad hex"),
    ("t123\xe92", "not ASCII"),
]


def test_malformed_lines_get_bel_are_logged_once_per_kind_and_the_device_keeps_working(
    rig: Rig, host: Host, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="bms.canbus.slcan")
    assert host.ask("t1230") == BEL  # a good frame before O: refused
    assert host.ask("O") == ""
    for line, _kind in BAD_LINES:
        host.write(line.encode("latin-1") + b"\r")
        assert host.replies(1) == [BEL], line
    host.write(b"t123" + b"1" * 300)  # over-long, no CR: one BEL, the rest skipped
    host.write(b"1111\rT00000001111\r")
    assert host.replies(2) == [BEL, "Z"]
    for _ in range(20):  # the same kind again: counted, not logged again
        host.send("tXYZ0")
    assert host.replies(20) == [BEL] * 20
    got = recv_all(rig.bus, 1)
    assert [(m.arbitration_id, bytes(m.data)) for m in got] == [(0x1, b"\x11")]
    s = rig.dev.stats
    assert s.bad_lines == len(BAD_LINES) + 1 + 20
    assert s.refused == 1 and s.frames_from_host == 1
    text = [r.getMessage() for r in caplog.records]
    for kind in {k for _, k in BAD_LINES} | {"over-long line", "frame while closed"}:
        assert sum(f": {kind}" in t for t in text) == 1, (kind, text)
    assert sum("b'tXYZ0'" in t for t in text) == 0  # "bad hex" was logged already


def test_a_host_that_never_reads_loses_frames_but_not_the_device(rig: Rig, host: Host) -> None:
    assert host.ask("O") == ""
    n = 50_000
    msg = can.Message(arbitration_id=0x100, data=bytes(8), is_extended_id=False)
    for _ in range(n):
        rig.bus.send(msg)

    def handled() -> int:
        s = rig.dev.stats
        return s.frames_to_host + s.dropped_to_host + s.queued_to_host

    wait_for(lambda: handled() == n, 15, "the flood to be handled")
    s = rig.dev.stats
    assert s.dropped_to_host > 0
    assert s.queued_to_host > 10_000 - 1_000  # max_queue, less what the pty took late
    host.send("F")  # answered ahead of the queued frames, after what the pty holds
    seen, flags = host.until("F")
    assert int(flags[1:], 16) & 0x08  # data overrun since the last F
    assert 0 < len(seen) < 2_000
    assert set(seen) == {"t1008" + "00" * 8}
    host.send("V")  # the host reads now: the queue drains behind the reply
    assert host.until("V")[1] == "V1013"
    host.send("F")
    assert host.until("F")[1] == "F00"  # flags cleared by the last F; no drops since
    t0 = time.monotonic()
    rig.dev.stop()
    assert time.monotonic() - t0 < 2.0


def test_a_host_that_only_sends_never_blocks_the_device(rig: Rig, host: Host) -> None:
    host.send("O")
    n = 15_000  # 30 kB of "z\r" fills the pty; the rest of the replies are dropped
    host.write(b"".join(b"t%03X1%02X\r" % (i % 0x800, i % 256) for i in range(n)))
    got = recv_all(rig.bus, n, timeout_s=15)
    assert len(got) == n
    assert [m.arbitration_id for m in got[:3]] == [0, 1, 2]
    wait_for(lambda: rig.dev.stats.frames_from_host == n)
    assert rig.dev.stats.replies_dropped > 0


def test_the_host_can_close_and_reopen_the_tty_and_gets_no_stale_bytes(rig: Rig) -> None:
    first = Host(rig.dev.tty_path)
    try:
        assert first.ask("O") == ""
        for i in range(2_000):  # 44 kB, twice what the pty holds: the rest stays queued
            rig.bus.send(can.Message(arbitration_id=i % 0x800, data=bytes(8), is_extended_id=False))
        wait_for(lambda: rig.dev.stats.frames_to_host + rig.dev.stats.queued_to_host == 2_000)
        assert rig.dev.stats.queued_to_host > 0
    finally:
        first.close()  # no C: a crashed host
    wait_for(lambda: not rig.dev.host_connected, what="the hangup")
    assert not rig.dev.is_open
    assert rig.dev.stats.dropped_to_host > 0  # the backlog went with the host
    for _ in range(3):
        second = Host(rig.dev.tty_path)
        try:
            assert second.ask("V") == "V1013"  # first bytes: the reply, nothing stale
            assert second.ask("O") == ""
            rig.bus.send(can.Message(arbitration_id=0x7AB, data=b"\x02", is_extended_id=False))
            assert second.replies(1) == ["t7AB102"]
            assert second.ask("t0011FF") == "z"
            assert second.ask("C") == ""
        finally:
            second.close()
        wait_for(lambda: not rig.dev.host_connected, what="the hangup")
    assert len(recv_all(rig.bus, 3)) == 3
    assert rig.dev.stats.connections == 4


def test_stop_is_idempotent_and_the_device_is_a_context_manager(rig: Rig) -> None:
    bus = can.Bus(interface="virtual", channel=rig.channel)
    try:
        with SlcanDevice(bus) as dev:
            path = dev.tty_path
            assert os.path.exists(path)
        dev.stop()
        with pytest.raises(RuntimeError):
            dev.start()
        with pytest.raises(OSError):
            os.open(path, os.O_RDWR | os.O_NOCTTY)
    finally:
        bus.shutdown()
    with pytest.raises(ConfigError, match="max_queue"):
        SlcanDevice(rig.bus, max_queue=0)


# -- the CLI ---------------------------------------------------------------------

CLI = textwrap.dedent(
    """
    import argparse, signal, sys
    from bms.cli import adapter
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    parser = argparse.ArgumentParser(prog="bms-emu")
    adapter.add_subparser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(sys.argv[1:])
    sys.exit(args.func(args))
    """
)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bms-emu")
    adapter_cli.add_subparser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_prints_the_tty_serves_it_and_stops_on_ctrl_c_with_its_counters() -> None:
    channel = f"slcan-cli-{uuid.uuid4().hex[:8]}"
    argv = ["adapter", "--interface", "virtual", "--channel", channel]
    with subprocess.Popen(
        [sys.executable, "-c", CLI, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        killer = threading.Timer(20, proc.kill)
        killer.start()
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("slcan adapter on /dev/pts/"), first
            h = Host(first.split(" on ", 1)[1].strip())
            try:
                assert h.ask("V") == "V1013"
                assert h.ask("O") == "" and h.ask("t1230") == "z"
            finally:
                h.close()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
        finally:
            killer.cancel()
            proc.kill()
    assert proc.returncode == 130, err
    assert "1 from the host" in out and "connections   1" in out
    assert f"bridged to virtual {channel}" in err


def test_cli_runs_for_a_duration_with_a_link(tmp_path, capsys) -> None:
    link = tmp_path / "ttyBMS"
    args = parse(["adapter", "--interface", "virtual", "--channel", "x", "--link", str(link),
                  "--duration", "0.3"])  # fmt: skip
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(args.func(args)))
    worker.start()
    wait_for(link.exists, what="the link")
    h = Host(str(link))
    try:
        assert h.ask("N") == "NBMS1"
    finally:
        h.close()
    worker.join(5)
    assert result == [0]
    assert not link.exists() and not link.is_symlink()
    out = capsys.readouterr().out
    assert out.startswith("slcan adapter on /dev/pts/") and "frames" in out


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        (["--interface", "nosuchbus"], CanLinkError, "unknown CAN interface 'nosuchbus'"),
        (["--max-queue", "0"], ConfigError, "--max-queue: must be >= 1"),
        (["--duration", "0"], ConfigError, "--duration: must be > 0 s"),
        (["--bus-kwarg", "oops"], ConfigError, "--bus-kwarg: expected KEY=VALUE"),
        (["--interface", "slcan", "--channel", "/dev/nonexistent-tty"], CanLinkError,
         "cannot open slcan channel '/dev/nonexistent-tty'"),
    ],
)  # fmt: skip
def test_cli_bad_arguments_raise_one_line_errors(argv, error, message) -> None:
    args = parse(["adapter", *argv])
    with pytest.raises(error) as info:
        args.func(args)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_cli_refuses_to_replace_a_file_with_its_link(tmp_path) -> None:
    f = tmp_path / "taken"
    f.write_text("mine")
    args = parse(["adapter", "--interface", "virtual", "--channel", "y", "--link", str(f)])
    with pytest.raises(ConfigError, match=r"--link: .* is not a symlink"):
        args.func(args)
    assert f.read_text() == "mine"
