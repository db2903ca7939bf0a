"""The loopback CAN hub (socketcand protocol): python-can clients, can.logger in another
process, order and loss at bus rates, malformed input, a client that stops reading,
shutdown, and the ``hub`` subcommand. Every socket is on 127.0.0.1; ports are picked free."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import can
import cantools
import pytest

from bms.canbus.hub import Hub
from bms.cli import hub as hub_cli
from bms.errors import CanLinkError, ConfigError

DBC = Path(__file__).resolve().parents[2] / "dbc" / "bms_vehicle.dbc"
CLIENT_LOGGER = "can.interfaces.socketcand.socketcand"

BusFactory = Callable[..., can.BusABC]


@pytest.fixture(autouse=True)
def _quiet_socketcand_client() -> Iterator[None]:
    """python-can's socketcand client logs a warning for every TCP read that splits a
    message (routine at speed); its errors still show."""
    log = logging.getLogger(CLIENT_LOGGER)
    old = log.level
    log.setLevel(logging.ERROR)
    yield
    log.setLevel(old)


@pytest.fixture
def hub() -> Iterator[Hub]:
    with Hub("127.0.0.1", 0) as h:
        yield h


@pytest.fixture
def bus_factory(hub: Hub) -> Iterator[BusFactory]:
    """python-can socketcand clients of ``hub``, all shut down at the end."""
    opened: list[can.BusABC] = []

    def make(channel: str = "vcan0", the_hub: Hub | None = None) -> can.BusABC:
        host, port = (the_hub or hub).address
        bus = can.Bus(interface="socketcand", host=host, port=port, channel=channel, tcp_tune=True)
        opened.append(bus)
        return bus

    yield make
    for bus in opened:
        bus.shutdown()


class RawClient:
    """A bare TCP client speaking the socketcand protocol by hand."""

    def __init__(self, address: tuple[str, int], *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.connect(address)
        self.buf = b""

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def read(self, n: int = 1, timeout_s: float = 5.0) -> list[bytes]:
        """The next ``n`` ``< ... >`` messages."""
        out: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < n:
            end = self.buf.find(b">")
            if end >= 0:
                out.append(self.buf[: end + 1].strip())
                self.buf = self.buf[end + 1 :]
                continue
            left = deadline - time.monotonic()
            assert left > 0, f"timed out with {out!r}, buffer {self.buf[:200]!r}"
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            assert chunk, "the hub closed the connection"
            self.buf += chunk
        return out

    def drain(self, idle_s: float = 0.5) -> list[bytes]:
        """Every message until the hub has sent nothing for ``idle_s``."""
        chunks = [self.buf]
        self.sock.settimeout(idle_s)
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        *whole, self.buf = b"".join(chunks).split(b">")
        return [m.strip() + b">" for m in whole]

    def handshake(self, channel: bytes = b"vcan0") -> None:
        assert self.read() == [b"< hi >"]
        self.send(b"< open " + channel + b" >")
        assert self.read() == [b"< ok >"]
        self.send(b"< rawmode >")
        assert self.read() == [b"< ok >"]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_factory(hub: Hub) -> Iterator[Callable[..., RawClient]]:
    opened: list[RawClient] = []

    def make(**kw: int) -> RawClient:
        c = RawClient(hub.address, **kw)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()


def recv_n(bus: can.BusABC, n: int, timeout_s: float = 10.0) -> list[can.Message]:
    out: list[can.Message] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        msg = bus.recv(0.5)
        if msg is not None:
            out.append(msg)
    return out


def wait_for(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _key(m: can.Message) -> tuple[int, bool, bytes]:
    return (m.arbitration_id, m.is_extended_id, bytes(m.data))


# ------------------------------------------------------------------ python-can clients


def test_two_python_can_clients_exchange_standard_and_extended_frames_in_order(
    hub: Hub, bus_factory: BusFactory
) -> None:
    a, b = bus_factory(), bus_factory()
    other_channel = bus_factory("vcan1")
    from_a = [
        can.Message(arbitration_id=0x100 + n, data=bytes(range(n)), is_extended_id=False)
        for n in range(9)
    ] + [
        can.Message(arbitration_id=0x000, data=b"", is_extended_id=False),
        can.Message(arbitration_id=0x7FF, data=b"\xff" * 8, is_extended_id=False),
        can.Message(arbitration_id=0x1FFFFFFF, data=b"\x00\x0f", is_extended_id=True),
        can.Message(arbitration_id=0x0, data=b"\x01", is_extended_id=True),
    ]
    from_b = [
        can.Message(arbitration_id=0x18FF5000 + n, data=bytes([0xA0 + n] * n), is_extended_id=True)
        for n in range(9)
    ]
    t0 = time.time()
    for m in from_a:
        a.send(m)
    for m in from_b:
        b.send(m)
    at_b = recv_n(b, len(from_a))
    at_a = recv_n(a, len(from_b))
    t1 = time.time()

    assert [_key(m) for m in at_b] == [_key(m) for m in from_a]
    assert [_key(m) for m in at_a] == [_key(m) for m in from_b]
    for m in at_a + at_b:  # stamped by the hub's clock when it read the frame
        assert t0 - 0.001 <= m.timestamp <= t1 + 0.001
        assert not m.is_error_frame
    assert [m.timestamp for m in at_b] == sorted(m.timestamp for m in at_b)
    # never echoed to the sender; another channel name is another bus
    assert a.recv(0.1) is None and b.recv(0.1) is None
    assert other_channel.recv(0.1) is None
    s = hub.stats
    assert (s.clients, s.frames_in, s.frames_out, s.dropped, s.bad_messages) == (
        3,
        len(from_a) + len(from_b),
        len(from_a) + len(from_b),
        0,
        0,
    )


def test_frames_reach_a_raw_client_in_socketcand_format(
    hub: Hub, bus_factory: BusFactory, raw_factory: Callable[..., RawClient]
) -> None:
    a = bus_factory()
    raw = raw_factory()
    raw.handshake()
    a.send(can.Message(arbitration_id=0x5, data=b"\x01\xab", is_extended_id=False))
    a.send(can.Message(arbitration_id=0xABCDE, data=b"", is_extended_id=True))
    first, second = raw.read(2)
    assert re.fullmatch(rb"< frame 005 \d+\.\d{6} 01AB >", first), first
    assert re.fullmatch(rb"< frame 000ABCDE \d+\.\d{6}  >", second), second
    # a raw client sends with 1-digit bytes, lower case, a message split over two writes
    raw.send(b"< send 1aaaaaaa 2 1 f")
    time.sleep(0.05)
    raw.send(b"1 >< echo >")
    assert raw.read() == [b"< echo >"]
    (m,) = recv_n(a, 1)
    assert (m.arbitration_id, m.is_extended_id, bytes(m.data)) == (0x1AAAAAAA, True, b"\x01\xf1")
    # remote frames as protocol.md has them (python-can's client cannot send or parse them)
    other = raw_factory()
    other.handshake()
    raw.send(b"< sendrtr 7ff 4 >")
    assert re.fullmatch(rb"< rtr 7FF \d+\.\d{6} 4 >", other.read()[0])
    # back to BCM mode: no more raw frames, sending still works
    other.send(b"< bcmmode >")
    assert other.read() == [b"< ok >"]
    other.send(b"< send 001 0 >< echo >")
    assert other.read() == [b"< echo >"]
    assert re.fullmatch(rb"< frame 001 \S+  >", raw.read()[0])
    a.send(can.Message(arbitration_id=0x2, data=b"", is_extended_id=False))
    assert raw.read()[0].startswith(b"< frame 002 ")
    other.send(b"< echo >")  # the frame went out before this echo: other did not get it
    assert other.read() == [b"< echo >"]


def test_clients_join_while_frames_flow_at_bus_rate(hub: Hub, bus_factory: BusFactory) -> None:
    """python-can reads the ok that answers rawmode in one recv(): a frame in the same read
    would fail its connect, so the hub holds frames for a new client a moment."""
    a = bus_factory()
    stop = threading.Event()

    def flood() -> None:
        seq = 0
        while not stop.is_set():
            a.send(can.Message(arbitration_id=0x100, data=seq.to_bytes(4, "big")))
            seq += 1
            if seq % 8 == 0:
                time.sleep(0.001)  # ~8,000 frames/s: a busy 1 Mbit/s bus

    sender = threading.Thread(target=flood)
    sender.start()
    try:
        for _ in range(10):
            joined = bus_factory()  # raises CanError if a frame spoils its handshake
            first = recv_n(joined, 20)
            seqs = [int.from_bytes(m.data, "big") for m in first]
            assert seqs == list(range(seqs[0], seqs[0] + 20))
    finally:
        stop.set()
        sender.join()
    assert hub.stats.dropped == 0


# ------------------------------------------------------------------ can.logger, cantools


def test_can_logger_in_another_process_records_frames_that_cantools_decodes(
    hub: Hub, bus_factory: BusFactory, tmp_path: Path
) -> None:
    db = cantools.database.load_file(str(DBC))
    values = {
        "BMS_Soc": {"SocDisplay": 81.5, "SocMin": 80.0, "SocMax": 83.0, "SocMean": 81.5},
        "BMS_TempStats": {"MaxTemp": 31.0, "MinTemp": 24.0, "MeanTemp": 27.0},
        "VCU_Heartbeat": {"AliveCounter": 7},
    }
    sent: list[tuple[str, can.Message]] = []
    for name, sig in values.items():
        msg = db.get_message_by_name(name)
        data = msg.encode({s.name: sig.get(s.name, 0) for s in msg.signals}, strict=False)
        sent.append(
            (name, can.Message(arbitration_id=msg.frame_id, data=data, is_extended_id=True))
        )
    sent.append(("std", can.Message(arbitration_id=0x123, data=b"\x11\x22", is_extended_id=False)))

    log_file = tmp_path / "bus.log"
    host, port = hub.address
    logger = [sys.executable, "-u", "-m", "can.logger", "-i", "socketcand", "-c", "vcan0"]
    # --bus-kwargs last: it takes every argument after it
    bus_kwargs = ["--bus-kwargs", f"host={host}", f"port={port}", "tcp_tune=True"]
    proc = subprocess.Popen(
        [*logger, "-f", str(log_file), *bus_kwargs],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once its bus is open and in rawmode
        assert line.startswith("Connected to SocketCanDaemonBus"), line
        sender = bus_factory()
        for _, m in sent:
            sender.send(m)
        wait_for(lambda: hub.stats.frames_out >= len(sent))
        time.sleep(0.5)  # the logger reads them from its socket
    finally:
        proc.send_signal(signal.SIGINT)  # can.logger writes its file on SIGINT
        _, err = proc.communicate(timeout=10)
    assert proc.returncode in (0, -signal.SIGINT), err

    logged = list(can.LogReader(str(log_file)))
    assert [_key(m) for m in logged] == [_key(m) for _, m in sent]
    for (name, _), m in zip(sent, logged, strict=True):
        if name == "std":
            continue
        decoded = db.decode_message(m.arbitration_id, m.data)
        for sig, value in values[name].items():
            assert decoded[sig] == pytest.approx(value, abs=1e-6)


# ------------------------------------------------------------------ order, loss


def test_twenty_thousand_frames_arrive_complete_and_in_order(
    hub: Hub, bus_factory: BusFactory
) -> None:
    a, b = bus_factory(), bus_factory()
    n = 20_000
    for seq in range(n):  # faster than any 1 Mbit/s bus: the queues absorb the burst
        a.send(
            can.Message(arbitration_id=0x200 + seq % 3, data=seq.to_bytes(4, "big") + b"\x55\xaa")
        )
    got = recv_n(b, n, timeout_s=20.0)
    seqs = [int.from_bytes(m.data[:4], "big") for m in got]
    assert len(seqs) == n
    assert seqs == list(range(n))
    assert [m.arbitration_id for m in got[:6]] == [0x200, 0x201, 0x202] * 2
    assert hub.stats.dropped == 0 and hub.stats.frames_out == n


# ------------------------------------------------------------------ malformed input

MALFORMED = [
    (b"< bogus >", b"unknown command"),
    (b"< send 12G 1 00 >", b"bad hex id"),
    (b"< send 123 3 11 22 >", b"does not match"),
    (b"< send 123 1 123 >", b"bad data byte"),
    (b"< send 800 0 >", b"out of range"),
    (b"< send 20000000 0 >", b"out of range"),
    (b"< send 123456789 0 >", b"more than 8"),
    (b"< send 123 9 1 2 3 4 5 6 7 8 9 >", b"CAN FD"),
    (b"< send 123 >", b"needs an id and a DLC"),
    (b"< fdsend 123 0 1 00 >", b"not supported"),
    (b"< subscribe 0 0 123 >", b"not supported"),
    (b"< open vcan1 >", b"already open"),
    (b"<>", b"empty"),
    (b"< send 123 1 \xff >", b"not ASCII"),
    (b"garbage without brackets\n", b"outside a message"),
    (b"< send 123 1 " + b"1 " * 400 + b">", b"longer than"),
    (b"< send 123 1 " + b"1 " * 400, b"longer than"),  # ...and its tail after more data
]


def test_malformed_messages_get_error_replies_and_everyone_keeps_working(
    hub: Hub,
    bus_factory: BusFactory,
    raw_factory: Callable[..., RawClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = bus_factory(), bus_factory()
    raw = raw_factory()
    early = raw_factory()
    assert early.read() == [b"< hi >"]
    early.send(b"< send 123 0 >")  # before < open >
    (reply,) = early.read()
    assert b"open a channel first" in reply
    raw.handshake()

    with caplog.at_level(logging.WARNING, logger="bms.canbus.hub"):
        for bad, why in MALFORMED:
            raw.send(bad)
            (reply,) = raw.read()
            assert re.fullmatch(rb"< error 008 \d+\.\d{6} [ -;=?-~]+ >", reply), reply
            assert why in reply, (bad, reply)
        raw.send(b"1 1 >")  # the end of the over-long message: skipped, no new error
        raw.send(b"< echo >")
        assert raw.read() == [b"< echo >"]
        raw.send(b"< send 123 1 01 < echo >")  # a message cut short by the next one
        reply, echo = raw.read(2)
        assert b"without its end" in reply and echo == b"< echo >"

    assert hub.stats.bad_messages == len(MALFORMED) + 2
    # one log line per client per log_interval_s, not one per bad message
    me = "{}:{}".format(*raw.sock.getsockname())
    from_raw = [r for r in caplog.records if f"bad message from {me}:" in r.getMessage()]
    assert len(from_raw) == 1
    # the hub, the raw client and the python-can clients all carry on
    raw.send(b"< send 321 1 42 >")
    a.send(can.Message(arbitration_id=0x10, data=b"\x01", is_extended_id=False))
    assert [_key(m) for m in recv_n(b, 2)] == [(0x321, False, b"\x42"), (0x10, False, b"\x01")]
    (frame,) = raw.read()
    assert re.fullmatch(rb"< frame 010 \d+\.\d{6} 01 >", frame), frame


def test_a_python_can_client_sees_a_rejected_frame_as_an_error_frame_and_carries_on(
    hub: Hub, bus_factory: BusFactory
) -> None:
    a, b = bus_factory(), bus_factory()
    # python-can sends a remote frame as "< send 123 2  >": two bytes announced, none given
    a.send(can.Message(arbitration_id=0x123, is_remote_frame=True, dlc=2, is_extended_id=False))
    (err,) = recv_n(a, 1)
    assert err.is_error_frame and err.arbitration_id == 0x008  # CAN_ERR_PROT
    a.send(can.Message(arbitration_id=0x124, data=b"\x07", is_extended_id=False))
    b.send(can.Message(arbitration_id=0x125, data=b"\x08", is_extended_id=False))
    assert [_key(m) for m in recv_n(b, 1)] == [(0x124, False, b"\x07")]
    assert [_key(m) for m in recv_n(a, 1)] == [(0x125, False, b"\x08")]


# ------------------------------------------------------------------ a client that stops reading


def test_a_client_that_never_reads_does_not_hold_up_the_others(
    bus_factory: BusFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with Hub("127.0.0.1", 0, max_queue=1000) as small:
        stuck = RawClient(small.address, rcvbuf=4096)
        try:
            stuck.handshake()
            a, b = bus_factory(the_hub=small), bus_factory(the_hub=small)
            got: list[can.Message] = []
            done = threading.Event()

            def receive() -> None:
                while not done.is_set():
                    msg = b.recv(0.1)
                    if msg is not None:
                        got.append(msg)

            reader = threading.Thread(target=receive)
            reader.start()
            sent = 0
            try:
                with caplog.at_level(logging.WARNING, logger="bms.canbus.hub"):
                    # until the stuck client's queue overflows (the kernel's socket buffers
                    # take a few MB first), and 1000 frames more
                    while sent < 400_000 and (small.stats.dropped == 0 or sent % 1000):
                        data = sent.to_bytes(4, "big") + b"\xc0\xff\xee\x00"
                        a.send(can.Message(arbitration_id=0x300, data=data))
                        sent += 1
                        while sent - len(got) > 500:  # b reads as fast as a sends
                            time.sleep(0.0005)
                    wait_for(lambda: len(got) >= sent, timeout_s=10.0)
            finally:
                done.set()
                reader.join()
            assert [int.from_bytes(m.data[:4], "big") for m in got] == list(range(sent))
            dropped = small.stats.dropped
            assert dropped > 0
            assert any("is not reading" in r.getMessage() for r in caplog.records)
            # it reads again: what it gets is in order, with a gap where frames were dropped
            seqs = [int(f.split()[4][:8], 16) for f in stuck.drain()]
            assert seqs == sorted(set(seqs)) and len(seqs) + dropped == sent
            for seq in range(sent, sent + 5):
                a.send(can.Message(arbitration_id=0x300, data=seq.to_bytes(4, "big")))
            seqs += [int(f.split()[4], 16) for f in stuck.read(5)]
            assert seqs == sorted(set(seqs)) and seqs[-1] == sent + 4
        finally:
            stuck.close()


# ------------------------------------------------------------------ shutdown


def test_stop_with_clients_connected_returns_quickly_and_frees_the_port(
    bus_factory: BusFactory,
) -> None:
    h = Hub("127.0.0.1", 0)
    h.start()
    h.start()  # idempotent
    a = bus_factory(the_hub=h)
    bus_factory(the_hub=h)
    raw = RawClient(h.address)
    try:
        raw.handshake()
        a.send(can.Message(arbitration_id=0x1, data=b"\x01"))
        raw.read()
        assert h.stats.clients == 3
        t0 = time.monotonic()
        h.stop()
        took_s = time.monotonic() - t0
        h.stop()  # idempotent
        assert took_s < 1.5
        assert not h.running
        raw.sock.settimeout(2.0)
        assert raw.sock.recv(100) == b""  # closed by the hub
        with Hub(*h.address) as again:  # the port is free again
            assert again.address == h.address
    finally:
        raw.close()


def test_a_port_in_use_is_one_clear_error(hub: Hub) -> None:
    with pytest.raises(CanLinkError, match=r"port is in use"):
        Hub(*hub.address).start()
    with pytest.raises(ConfigError, match=r"port: must be 0\.\.65535"):
        Hub("127.0.0.1", 70000)


# ------------------------------------------------------------------ the CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bms-emu")
    hub_cli.add_subparser(p.add_subparsers(dest="command"))
    return p


def test_cli_port_in_use_raises_canlinkerror(hub: Hub) -> None:
    args = _parser().parse_args(["hub", "--port", str(hub.address[1]), "--quiet"])
    with pytest.raises(CanLinkError, match=r"cannot listen on 127\.0\.0\.1"):
        args.func(args)


CLI = textwrap.dedent(
    """
    import argparse, sys
    from bms.cli import hub
    p = argparse.ArgumentParser(prog="bms-emu")
    hub.add_subparser(p.add_subparsers(dest="command"))
    args = p.parse_args(sys.argv[1:])
    sys.exit(args.func(args))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_cli_serves_until_ctrl_c_then_prints_its_counters(bus_factory: BusFactory) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "hub", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.fullmatch(r"hub on 127\.0\.0\.1:(\d+) \(socketcand protocol\)\n", first)
        assert m, first
        port = int(m.group(1))
        second = proc.stdout.readline()
        assert f"interface=socketcand host=127.0.0.1 port={port} channel=vcan0" in second
        a = bus_factory(the_hub=_At(port))
        b = bus_factory(the_hub=_At(port))
        a.send(can.Message(arbitration_id=0x42, data=b"\x01\x02"))
        assert [_key(m) for m in recv_n(b, 1)] == [(0x42, True, b"\x01\x02")]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert "hub stopped: " in out and "1 frames in, 1 out, 0 dropped" in out
    assert "connected" in err  # connects and disconnects are logged unless --quiet


class _At:
    """Stands in for a Hub where only the address is needed."""

    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)
