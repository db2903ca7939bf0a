"""A virtual SLCAN (Lawicel) USB-CAN adapter on a pseudo-terminal.

``SlcanDevice(bus)`` opens a pty and answers on it as an SLCAN adapter
(CANable, USBtin, Lawicel CANUSB) would on ``/dev/ttyACM0``, bridging it to
a python-can bus: python-can's ``slcan`` interface, ``cantools monitor -i
slcan``, ``slcand`` or SavvyCAN open :attr:`SlcanDevice.tty_path` and see an
adapter, so the USB-CAN path is tested without hardware::

    bus = can.Bus(interface="virtual", channel="bench")   # the device's own instance
    with SlcanDevice(bus) as dev:
        print(dev.tty_path)                               # /dev/pts/7
        ...  # can.Bus(interface="slcan", channel=dev.tty_path, sleep_after_open=0)

Commands (one per line, CR or LF terminated; OK is ``\\r``, error is BEL):

- ``O`` open, ``L`` open listen-only, ``C`` close (always OK);
- ``S0``..``S8`` bitrate 10k..1M (``S9`` 83.3k as python-can knows it),
  ``sXXYY`` BTR registers, ``Yn`` CAN FD data bitrate: only while closed.
  They are recorded, not applied: the bridged bus keeps its own bitrate;
- ``V`` / ``v`` version (``V1013``), ``N`` serial number (``NBMS1``),
  ``F`` status flags (``F00``; bit 3, data overrun, after frames were
  dropped since the last ``F``, bit 0 while the queue is full);
- ``Z0`` / ``Z1`` timestamps off/on (4 hex digits, milliseconds 0..59999 of
  the frame's bus timestamp, appended to frames sent to the host);
- ``Mxxxxxxxx`` / ``mxxxxxxxx`` acceptance code/mask, ``X0``/``X1``
  auto-poll: accepted, no effect (every frame is passed, always auto-poll);
- frames ``tIIILDD..``, ``TIIIIIIIILDD..``, ``rIIIL``, ``RIIIIIIIIL`` and the
  CAN FD ``d``/``D``/``b``/``B`` forms python-can sends: forwarded to the bus
  (stamped with this device's clock) and answered ``z\\r`` (standard id) or
  ``Z\\r`` (extended), as Lawicel adapters do in auto-poll mode; python-can
  reads these acknowledgements and ignores them.

Refused (BEL, counted in ``refused``): frames while the channel is closed or
listen-only, a bitrate while open. Malformed lines (bad hex, wrong length,
DLC > 8, identifier out of range, unknown command, over-long line, not
ASCII): BEL, counted in ``bad_lines``. Each kind is logged (logger
``bms.canbus.slcan``) the first time, then at most once per
``log_interval_s`` with the count since. Nothing raises out of the threads.

Frames from the bus reach the host only while the channel is open, through a
queue of ``max_queue`` frames and non-blocking writes: a host that does not
read loses frames (counted in ``dropped_to_host``, logged), never stalls the
device; replies to a host that only sends are bounded the same way.

The host's side of the pty is not held open here: when the last host closes
it (python-can's ``shutdown``, a crash, ``kill -9``) the device sees the
hangup, closes the channel, discards what was queued for that host and
flushes the bytes it never read, so the next host starts clean. While no host
has the tty open the device checks every 50 ms (no busy loop). The bus
belongs to the caller: :meth:`SlcanDevice.stop` does not shut it down.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import select
import termios
import threading
import time
import tty
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import can
from can.util import CAN_FD_DLC, len2dlc

from bms.errors import ConfigError

__all__ = ["BITRATES", "SlcanDevice", "SlcanStats"]

_log = logging.getLogger("bms.canbus.slcan")

#: ``Sn`` -> bit/s (Lawicel S0..S8; S9 is python-can's 83.3 kbit/s).
BITRATES = {
    "0": 10_000,
    "1": 20_000,
    "2": 50_000,
    "3": 100_000,
    "4": 125_000,
    "5": 250_000,
    "6": 500_000,
    "7": 750_000,
    "8": 1_000_000,
    "9": 83_300,
}
#: ``Yn`` -> CAN FD data bit/s (CANable 2.0 firmware, as python-can sends it).
DATA_BITRATES = {"1": 1_000_000, "2": 2_000_000, "4": 4_000_000, "5": 5_000_000, "8": 8_000_000}

VERSION = "1013"  # hardware 10, software 13: python-can's get_version() reads (10, 13)
OK = b"\r"
BEL = b"\x07"
MAX_LINE = 160  # longest legal line: B + 8 id + 1 dlc + 128 data = 138 characters
MAX_REPLIES = 1024  # replies queued for a host that sends but does not read
HOST_POLL_S = 0.05  # how often a device without a host looks for one (0.3% CPU)
_HEX = "0123456789abcdefABCDEF"
_BATCH = 256  # frames per write to the pty
_MAX_STD_ID = 0x7FF
_MAX_EXT_ID = 0x1FFF_FFFF


@dataclass(frozen=True)
class SlcanStats:
    """A snapshot of the device's counters."""

    frames_to_host: int = 0  # frames written to the pty
    frames_from_host: int = 0  # frames the host sent that went onto the bus
    dropped_to_host: int = 0  # bus frames lost: queue full, or the host went away
    bad_lines: int = 0  # malformed lines (BEL)
    refused: int = 0  # well-formed commands refused in the current state (BEL)
    errors: int = 0  # bus send/receive failures, pty I/O errors
    replies_dropped: int = 0  # replies lost to a host that does not read
    queued_to_host: int = 0  # frames waiting in the queue now
    connections: int = 0  # times a host opened the tty

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _LineError(Exception):
    """A line the device answers with BEL: ``kind`` names the problem for the log."""

    def __init__(self, kind: str, detail: str = "", *, refused: bool = False) -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail
        self.refused = refused


class _RateLimitedLog:
    """The first message of each kind, then at most one per interval with a count."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def warning(self, kind: str, msg: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval_s:
                self._suppressed[kind] += 1
                return
            self._last[kind] = now
            since = self._suppressed.pop(kind, 0)
        if since:
            msg += " (%d more since the last report)"
            args = (*args, since)
        self._logger.warning(msg, *args, exc_info=exc_info)

    def flush(self, prefix: str) -> None:
        with self._lock:
            left = sorted(self._suppressed.items())
            self._suppressed.clear()
        for kind, n in left:
            self._logger.warning("%s: %d more %s not logged", prefix, n, kind)


class SlcanDevice:
    """A pty that behaves like an SLCAN adapter and bridges it to a python-can bus.

    ``bus`` is the device's own bus instance (python-can's ``virtual`` needs
    one instance per participant on a channel; one reader per bus): the
    device reads every frame from it and sends the host's frames on it.
    ``max_queue`` frames wait for a slow host, then frames are dropped;
    ``send_timeout_s`` bounds one ``bus.send``; problems are logged at most
    once per ``log_interval_s`` per kind.
    """

    def __init__(
        self,
        bus: can.BusABC,
        *,
        max_queue: int = 10_000,
        log_interval_s: float = 10.0,
        send_timeout_s: float = 0.1,
        serial_number: str = "BMS1",
    ) -> None:
        if max_queue < 1:
            raise ConfigError(f"must be >= 1, got {max_queue}", field="max_queue")
        if not log_interval_s >= 0:
            raise ConfigError(f"must be >= 0 s, got {log_interval_s}", field="log_interval_s")
        if not send_timeout_s >= 0:
            raise ConfigError(f"must be >= 0 s, got {send_timeout_s}", field="send_timeout_s")
        if not serial_number.isascii() or not serial_number.isalnum():
            raise ConfigError(f"must be letters and digits, got {serial_number!r}", field="serial")
        self._bus = bus
        self._max_queue = max_queue
        self._send_timeout_s = send_timeout_s
        self._serial = serial_number
        self._rlog = _RateLimitedLog(_log, log_interval_s)

        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no CR/LF translation; stays set after close
            self.tty_path: str = os.ttyname(slave)
        finally:
            os.close(slave)  # see the module docstring: a hangup must be visible
        os.set_blocking(master, False)
        self._master = master
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

        # channel state (written by the I/O thread, read by the bus thread)
        self._open = False
        self._listen_only = False
        self._timestamps = False
        self.bitrate: int | None = None  # what the host asked for (S/s); not applied
        self.data_bitrate: int | None = None
        self.btr: str | None = None

        # host -> device
        self._inbuf = bytearray()
        self._skipping = False  # inside an over-long line: discard up to the next CR
        # device -> host
        self._frames: collections.deque[bytes] = collections.deque()
        self._replies: collections.deque[bytes] = collections.deque()
        self._pending = memoryview(b"")
        self._kicked = False
        self._write_blocked = False
        self._connected = False

        # counters, each written by one thread only
        self._n_to_host = 0
        self._n_from_host = 0
        self._n_dropped_bus = 0  # bus thread
        self._n_dropped_io = 0  # I/O thread
        self._n_bad = 0
        self._n_refused = 0
        self._n_errors_io = 0
        self._n_errors_bus = 0
        self._n_replies_dropped = 0
        self._n_connections = 0
        self._overrun = False

        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False

    # -- public --------------------------------------------------------------

    @property
    def stats(self) -> SlcanStats:
        return SlcanStats(
            frames_to_host=self._n_to_host,
            frames_from_host=self._n_from_host,
            dropped_to_host=self._n_dropped_bus + self._n_dropped_io,
            bad_lines=self._n_bad,
            refused=self._n_refused,
            errors=self._n_errors_io + self._n_errors_bus,
            replies_dropped=self._n_replies_dropped,
            queued_to_host=len(self._frames),
            connections=self._n_connections,
        )

    @property
    def is_open(self) -> bool:
        """The CAN channel is open (``O`` or ``L`` received, no ``C`` since)."""
        return self._open

    @property
    def host_connected(self) -> bool:
        """A host has the tty open (as last seen by the device, within 50 ms)."""
        return self._connected

    def start(self) -> None:
        """Start the I/O and bus threads. Once only; a stopped device stays stopped."""
        if self._closed:
            raise RuntimeError("SlcanDevice: start() after stop(); make a new device")
        if self._started:
            return
        self._started = True
        name = self.tty_path.rsplit("/", 1)[-1]
        self._threads = [
            threading.Thread(target=self._io_main, name=f"slcan-io-{name}", daemon=True),
            threading.Thread(target=self._bus_main, name=f"slcan-bus-{name}", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop the threads and close the pty (hosts see a hangup). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass
        stuck = []
        for t in self._threads:
            t.join(timeout=2.0)
            if t.is_alive():
                stuck.append(t.name)
        if stuck:  # a bus.recv/send that ignores its timeout: leave its fds alone
            _log.warning("%s: threads %s did not stop within 2 s", self.tty_path, stuck)
            return
        for fd in (self._master, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._rlog.flush(self.tty_path)

    def __enter__(self) -> SlcanDevice:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<SlcanDevice {self.tty_path} channel {state}>"

    # -- bus -> host (bus thread) ---------------------------------------------

    def _bus_main(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._bus.recv(timeout=0.1)
            except Exception as exc:  # a bus that fails: count, log, keep trying
                self._n_errors_bus += 1
                self._rlog.warning("bus_recv", "%s: bus receive failed: %s", self.tty_path, exc)
                self._stop.wait(0.1)
                continue
            if msg is None or msg.is_error_frame or not self._open:
                continue
            try:
                line = self._frame_line(msg)
            except Exception as exc:
                self._n_errors_bus += 1
                self._rlog.warning("bus_frame", "%s: cannot pass %s: %s", self.tty_path, msg, exc)
                continue
            if len(self._frames) >= self._max_queue:
                self._n_dropped_bus += 1
                self._overrun = True
                self._rlog.warning(
                    "dropped",
                    "%s: host does not read: queue of %d frames full, frames dropped (%d so far)",
                    self.tty_path,
                    self._max_queue,
                    self._n_dropped_bus,
                )
                continue
            self._frames.append(line)
            self._kick()

    def _frame_line(self, msg: can.Message) -> bytes:
        ext = msg.is_extended_id
        ident = f"{msg.arbitration_id:08X}" if ext else f"{msg.arbitration_id:03X}"
        if msg.is_remote_frame:
            text = f"{'R' if ext else 'r'}{ident}{min(msg.dlc, 8):d}"
        elif msg.is_fd:
            kind = ("B" if ext else "b") if msg.bitrate_switch else ("D" if ext else "d")
            text = f"{kind}{ident}{len2dlc(len(msg.data)):X}{msg.data.hex().upper()}"
        else:
            if len(msg.data) > 8:
                raise ValueError(f"{len(msg.data)} data bytes in a classic CAN frame")
            text = f"{'T' if ext else 't'}{ident}{len(msg.data):d}{msg.data.hex().upper()}"
        if self._timestamps:
            ts = msg.timestamp if msg.timestamp > 0 else time.time()
            text += f"{int(ts * 1000) % 60_000:04X}"
        return text.encode("ascii") + OK

    def _kick(self) -> None:
        """Wake the I/O thread (once until it looks at the queues again)."""
        if self._kicked:
            return
        self._kicked = True
        try:
            os.write(self._wake_w, b"\0")
        except OSError:  # pipe full (it is woken anyway) or closed at stop
            pass

    # -- the pty (I/O thread) -------------------------------------------------

    def _io_main(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        poller.register(self._master, select.POLLIN)
        hangup = select.poll()
        hangup.register(self._master, select.POLLIN)
        idle = select.poll()
        idle.register(self._wake_r, select.POLLIN)
        while not self._stop.is_set():
            try:
                if self._connected:
                    self._serve(poller)
                else:
                    self._wait_for_host(hangup, idle)
            except Exception as exc:  # a bug: keep serving, do not spin
                self._n_errors_io += 1
                self._rlog.warning(
                    "internal", "%s: error in the device: %r", self.tty_path, exc, exc_info=True
                )
                self._stop.wait(0.1)

    def _wait_for_host(self, hangup: select.poll, idle: select.poll) -> None:
        """While no host has the tty open the master polls POLLHUP (at once, every
        time) and reads EIO: look again every HOST_POLL_S, waking early only to stop."""
        ev = dict(hangup.poll(0)).get(self._master, 0)
        if ev & select.POLLHUP and not ev & select.POLLIN:
            if idle.poll(HOST_POLL_S * 1000):
                self._drain_wake()
            return
        self._connected = True
        self._n_connections += 1
        _log.info("%s: host opened the adapter", self.tty_path)

    def _serve(self, poller: select.poll) -> None:
        mask = select.POLLIN | (select.POLLOUT if self._write_blocked else 0)
        poller.modify(self._master, mask)
        for fd, ev in poller.poll(1000):
            if fd == self._wake_r:
                self._drain_wake()
            elif ev & select.POLLOUT:
                self._write_blocked = False
            if fd == self._master and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                if not self._read_host():
                    self._host_gone()
                    return
        if not self._write_blocked:
            self._kicked = False  # producers kick again from here on
            self._write_host()
        if self._write_blocked:
            self._kicked = True  # POLLOUT wakes us: no wake-up per frame meanwhile

    def _drain_wake(self) -> None:
        self._kicked = False
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _read_host(self) -> bool:
        """Read and answer what the host sent; False when the host has gone."""
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: every host closed the tty
                self._n_errors_io += 1
                self._rlog.warning("pty_read", "%s: read failed: %s", self.tty_path, exc)
            return False
        if not data:
            return False
        self._feed(data)
        return True

    def _host_gone(self) -> None:
        # closed first, so that the bus thread stops queueing frames for this host
        was_open, self._open, self._listen_only = self._open, False, False
        lost = len(self._frames)
        self._frames.clear()
        self._n_dropped_io += lost
        self._replies.clear()
        self._pending = memoryview(b"")
        self._write_blocked = self._kicked = False
        self._inbuf.clear()
        self._skipping = False
        self._connected = False
        # bytes written but never read would reach the next host: flush them
        try:
            fd = os.open(self.tty_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                termios.tcflush(fd, termios.TCIFLUSH)
            finally:
                os.close(fd)
        except OSError as exc:
            self._n_errors_io += 1
            self._rlog.warning("pty_flush", "%s: cannot flush: %s", self.tty_path, exc)
        _log.info(
            "%s: host closed the adapter%s%s",
            self.tty_path,
            "; channel closed" if was_open else "",
            f"; {lost} queued frames discarded" if lost else "",
        )

    def _write_host(self) -> None:
        """Write queued bytes until the pty is full (then wait for POLLOUT)."""
        while True:
            if not self._pending:
                if self._replies:
                    chunk = b"".join(self._replies)
                    self._replies.clear()
                elif self._frames:
                    frames = self._frames
                    batch = [frames.popleft() for _ in range(min(_BATCH, len(frames)))]
                    self._n_to_host += len(batch)
                    chunk = b"".join(batch)
                else:
                    return
                self._pending = memoryview(chunk)
            try:
                n = os.write(self._master, self._pending)
            except BlockingIOError:
                self._write_blocked = True
                return
            except OSError as exc:
                self._n_errors_io += 1
                self._rlog.warning("pty_write", "%s: write failed: %s", self.tty_path, exc)
                self._pending = memoryview(b"")
                return
            self._pending = self._pending[n:]

    def _reply(self, data: bytes) -> None:
        if len(self._replies) >= MAX_REPLIES:
            self._n_replies_dropped += 1
            self._rlog.warning(
                "replies_dropped",
                "%s: host sends but does not read: replies dropped",
                self.tty_path,
            )
            return
        self._replies.append(data)

    # -- host lines ------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        pieces = data.replace(b"\n", b"\r").split(b"\r")
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if self._skipping:
                if not last:
                    self._skipping = False  # the over-long line ends here
                continue
            self._inbuf += piece
            if last:
                if len(self._inbuf) > MAX_LINE:
                    self._bad(
                        _LineError("over-long line", f"{len(self._inbuf)}+ bytes, no CR"),
                        bytes(self._inbuf[:40]),
                    )
                    self._inbuf.clear()
                    self._skipping = True
                return
            line = bytes(self._inbuf)
            self._inbuf.clear()
            if line:
                self._line(line)

    def _line(self, raw: bytes) -> None:
        try:
            if len(raw) > MAX_LINE:
                raise _LineError("over-long line", f"{len(raw)} bytes")
            try:
                line = raw.decode("ascii")
            except UnicodeDecodeError:
                raise _LineError("not ASCII") from None
            reply = self._command(line)
        except _LineError as exc:
            self._bad(exc, raw)
            return
        except Exception as exc:  # a bug here must not kill the device
            self._n_errors_io += 1
            self._rlog.warning("internal", "%s: line %r: %s", self.tty_path, raw[:40], exc)
            reply = BEL
        self._reply(reply)

    def _bad(self, exc: _LineError, raw: bytes = b"") -> None:
        if exc.refused:
            self._n_refused += 1
            what = "refused"
        else:
            self._n_bad += 1
            what = "bad line"
        detail = f" ({exc.detail})" if exc.detail else ""
        self._rlog.warning(
            exc.kind, "%s: %s %r: %s%s, BEL sent", self.tty_path, what, raw[:40], exc.kind, detail
        )
        self._reply(BEL)

    def _command(self, line: str) -> bytes:
        c = line[0]
        arg = line[1:]
        if c in "tTrRdDbB":
            return self._host_frame(line)
        if c in "OL":
            _expect(arg, 0)
            listen = c == "L"
            if self._open and self._listen_only != listen:
                raise _LineError("already open", "send C first", refused=True)
            if not self._open:
                self._frames.clear()  # leftovers of an earlier session
            self._open, self._listen_only, self._overrun = True, listen, False
            return OK
        if c == "C":
            _expect(arg, 0)
            self._open = self._listen_only = False
            return OK
        if c == "S":
            if len(arg) != 1 or arg not in BITRATES:
                raise _LineError("bad bitrate", "S0..S8")
            self._closed_only("bitrate")
            self.bitrate, self.btr = BITRATES[arg], None
            return OK
        if c == "s":
            _expect(arg, 4, hexa=True)
            self._closed_only("BTR")
            self.bitrate, self.btr = None, arg.upper()
            return OK
        if c == "Y":
            if len(arg) != 1 or arg not in DATA_BITRATES:
                raise _LineError("bad data bitrate", "Y1, Y2, Y4, Y5, Y8")
            self._closed_only("data bitrate")
            self.data_bitrate = DATA_BITRATES[arg]
            return OK
        if c in "Vv":
            _expect(arg, 0)
            return f"{c}{VERSION}\r".encode()
        if c == "N":
            _expect(arg, 0)
            return f"N{self._serial}\r".encode()
        if c == "F":
            _expect(arg, 0)
            flags = (0x08 if self._overrun else 0) | (
                0x01 if len(self._frames) >= self._max_queue else 0
            )
            self._overrun = False
            return f"F{flags:02X}\r".encode()
        if c == "Z":
            if arg not in ("0", "1"):
                raise _LineError("bad timestamp switch", "Z0 or Z1")
            self._timestamps = arg == "1"
            return OK
        if c in "Mm":
            _expect(arg, 8, hexa=True)
            return OK
        if c == "X":
            if arg not in ("0", "1"):
                raise _LineError("bad auto-poll switch", "X0 or X1")
            return OK
        raise _LineError("unknown command")

    def _closed_only(self, what: str) -> None:
        if self._open:
            raise _LineError(f"{what} while open", "send C first", refused=True)

    def _host_frame(self, line: str) -> bytes:
        c = line[0]
        ext = c in "TRDB"
        remote = c in "rR"
        fd = c in "dDbB"
        n_id = 8 if ext else 3
        if len(line) < n_id + 2:
            raise _LineError("wrong length", f"{len(line)} characters")
        id_hex, dlc_ch, body = line[1 : n_id + 1], line[n_id + 1], line[n_id + 2 :]
        if not _is_hex(id_hex):
            raise _LineError("bad hex", "identifier")
        ident = int(id_hex, 16)
        if ident > (_MAX_EXT_ID if ext else _MAX_STD_ID):
            raise _LineError("id out of range", f"0x{ident:X}")
        if not _is_hex(dlc_ch):
            raise _LineError("bad hex", "DLC")
        dlc = int(dlc_ch, 16)
        if fd:
            length = CAN_FD_DLC[dlc]
        elif dlc > 8:
            raise _LineError("DLC > 8", f"DLC {dlc}")
        else:
            length = dlc
        if remote:
            if body:
                raise _LineError("wrong length", "data in a remote frame")
            data = None
        else:
            if len(body) != 2 * length:
                raise _LineError("wrong length", f"DLC {dlc}, {len(body)} hex digits")
            if body and not _is_hex(body):
                raise _LineError("bad hex", "data")
            data = bytes.fromhex(body)
        if not self._open or self._listen_only:
            state = "listen-only" if self._open else "closed"
            raise _LineError(f"frame while {state}", "send O first", refused=True)
        msg = can.Message(
            timestamp=time.time(),
            arbitration_id=ident,
            is_extended_id=ext,
            is_remote_frame=remote,
            is_fd=fd,
            bitrate_switch=c in "bB",
            dlc=length,
            data=data,
        )
        try:
            self._bus.send(msg, timeout=self._send_timeout_s)
        except Exception as exc:  # CanError, or any failure of a bus driver
            self._n_errors_io += 1
            self._rlog.warning("bus_send", "%s: bus send failed: %s", self.tty_path, exc)
            return BEL  # as an adapter with a full transmit FIFO
        self._n_from_host += 1
        return b"Z\r" if ext else b"z\r"


def _is_hex(s: str) -> bool:
    return bool(s) and not s.strip(_HEX)


def _expect(arg: str, n: int, *, hexa: bool = False) -> None:
    if len(arg) != n:
        raise _LineError("wrong length", f"{n} characters after the command")
    if hexa and not _is_hex(arg):
        raise _LineError("bad hex")
