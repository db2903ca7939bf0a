"""A loopback CAN hub: several processes share one virtual CAN bus over TCP.

For machines without SocketCAN (macOS, Windows, WSL, containers, CI). The hub
speaks the socketcand protocol (linux-can/socketcand, doc/protocol.md), so
python-can's own client joins unchanged, and with it every tool built on
python-can (``can.logger``, ``can.viewer``, ``cantools monitor``)::

    bus = can.Bus(interface="socketcand", host="127.0.0.1", port=29536,
                  channel="vcan0", tcp_tune=True)

What a client sees
    ``< hi >`` on connect; ``< open NAME >`` and ``< rawmode >`` answer
    ``< ok >``. Every frame any client sends (``< send ID DLC B0 B1 ... >``, or
    ``< sendrtr ID DLC >``) goes to every other client in rawmode on the same
    channel name, never back to the sender (socketcand does not echo either),
    as ``< frame ID SECS.USECS DATA >`` (``< rtr ID SECS.USECS DLC >``): the id
    as 3 hex digits (standard) or 8 (extended), the data as contiguous hex
    bytes, the time stamp taken from the hub's clock (``time.time()``) when it
    read the frame. One thread serves every connection, so all receivers see
    all frames in one order: the order the hub read them in.

Malformed input
    An unknown command, bad hex, a DLC that does not match the data, an id out
    of range, bytes outside ``< >``, a message over 512 bytes: the sender gets
    ``< error 008 SECS.USECS what was wrong >`` and the hub logs one line
    (logger ``bms.canbus.hub``, at most one per client and kind every
    ``log_interval_s``, with a count of those held back). The reply has the
    shape of a socketcand error frame (class 0x008, CAN_ERR_PROT: a protocol
    violation) with the reason after the time stamp, because python-can's
    client parses any ``< error ... >`` as one and a reply of plain words would
    wedge its receive buffer for good. Nothing a client sends can stop the hub
    or another connection.

A client that stops reading (overflow policy)
    Each client has its own outgoing queue of ``max_queue`` messages (100,000:
    more than 12 s of a full 1 Mbit/s bus). When it is full, new frames for
    that client are dropped and counted (``stats.dropped``), with a log line
    when the dropping starts and one when the client reads again; it stays
    connected, as a CAN controller whose receive FIFO overflowed stays on the
    bus. The other clients never wait for it.

One adaptation to python-can's client: it reads the ``< ok >`` that answers
``< rawmode >`` with a single ``recv()`` and compares it whole, so a frame in
the same read would fail its connect. The hub therefore holds frames for a new
rawmode client for ``RAWMODE_SETTLE_S`` (queued, not dropped) before it sends
them.

Not served: the BCM commands (add, update, delete, filter, subscribe, ...),
control and ISO-TP modes, CAN FD (``fdsend``), the UDP discovery beacon. They
get an ``< error ... >`` reply.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from bms.errors import CanLinkError, ConfigError

__all__ = ["DEFAULT_PORT", "MAX_MESSAGE_BYTES", "RAWMODE_SETTLE_S", "Hub", "HubStats"]

_log = logging.getLogger(__name__)

DEFAULT_PORT = 29536  # socketcand's own default
MAX_MESSAGE_BYTES = 512  # longer than any valid message (a full send is ~45 bytes)
RAWMODE_SETTLE_S = 0.1  # see the module docstring
_RECV_BYTES = 65536
_BATCH = 512  # queued messages joined into one send()
_IDLE_WAIT_S = 0.5
_ERROR_CLASS = b"008"  # CAN_ERR_PROT (linux/can/error.h): protocol violation
_MAX_CHANNEL_NAME = 16  # protocol.md: "maximum 16 characters"

_HEX = rb"[0-9A-Fa-f]"
_SEND_RE = re.compile(rb"\s*send\s+(" + _HEX + rb"{1,8})\s+([0-8])((?:\s+" + _HEX + rb"{1,2})*)\s*")
_HEX_TOKEN = re.compile(rb"[0-9A-Fa-f]+")
_FRAME_PREFIXES = (b"< frame ", b"< rtr ")
_UNSUPPORTED = frozenset(
    b"add update delete filter muxfilter subscribe unsubscribe controlmode isotpmode "
    b"isotpconf sendpdu statistics fdsend".split()
)


class _BadMessage(Exception):
    """A client's message is malformed; the text is the reason sent back."""


@dataclass(frozen=True)
class HubStats:
    """Counters of a hub since it started.

    clients: connections open now. frames_in: valid frames received from
    clients. frames_out: frames written to clients (one per receiver).
    dropped: frames not delivered because a receiver's queue was full.
    bad_messages: malformed messages answered with ``< error ... >``.
    """

    clients: int = 0
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    bad_messages: int = 0

    def __str__(self) -> str:
        return (
            f"{self.clients} clients, {self.frames_in:,} frames in, {self.frames_out:,} out, "
            f"{self.dropped:,} dropped, {self.bad_messages:,} bad messages"
        )


class _Client:
    """One TCP connection and its socketcand state (touched only by the hub thread)."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name
        self.inbuf = bytearray()
        self.skipping = False  # inside an over-long message: discard up to its '>'
        self.channel: bytes | None = None  # None: mode NO_BUS
        self.raw = False
        self.out: deque[bytes] = deque()
        self.pending: memoryview | None = None  # a joined batch, partly sent
        self.pending_frames = 0
        self.hold_until = 0.0  # monotonic; queued frames wait until then
        self.want_write = False
        self.overflowing = False
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self.bad = 0


class _RateLimitedLog:
    """At most one warning per key every ``interval_s``; the next one says how many waited."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def warning(self, key: tuple[str, str], msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            msg += " (and %d more like it in the last %.0f s)"
            args = (*args, held, self.interval_s)
        _log.warning(msg, *args)

    def forget(self, name: str) -> None:
        for key in [k for k in self._last if k[1] == name]:
            del self._last[key]
            self._held.pop(key, None)


def _printable(raw: bytes | bytearray, limit: int = 40) -> str:
    """A quote of client input that is safe inside a reply: ASCII, no '<' or '>'."""
    text = bytes(raw[:limit]).decode("ascii", "replace")
    text = "".join(c if " " <= c <= "~" and c not in "<>" else "?" for c in text)
    return text + ("..." if len(raw) > limit else "")


def _parse_id(tok: bytes) -> tuple[bytes, bool]:
    """socketcand's rule: 8 hex digits is an extended id, fewer a standard one.
    Returns the id as the hub writes it (3 or 8 upper-case digits)."""
    if not _HEX_TOKEN.fullmatch(tok):
        raise _BadMessage(f"bad hex id {_printable(tok)!r}")
    value = int(tok, 16)
    if len(tok) == 8:
        if value > 0x1FFFFFFF:
            raise _BadMessage(f"extended id {tok.decode()} out of range (max 1FFFFFFF)")
        return b"%08X" % value, True
    if len(tok) > 8:
        raise _BadMessage(f"id {_printable(tok)} has more than 8 hex digits")
    if value > 0x7FF:
        raise _BadMessage(
            f"standard id {tok.decode()} out of range (max 7FF; extended ids have 8 digits)"
        )
    return b"%03X" % value, False


def _parse_dlc(tok: bytes) -> int:
    if not tok.isdigit() or int(tok) > 8:
        raise _BadMessage(f"DLC {_printable(tok)!r} is not 0..8 (CAN FD is not supported)")
    return int(tok)


def _diagnose_send(tokens: list[bytes]) -> tuple[bytes, bytes]:
    """The slow path of ``send``: say exactly what is wrong, or return (id, hex data)."""
    if len(tokens) < 3:
        raise _BadMessage("send needs an id and a DLC, as in: send 123 2 11 22")
    ident, _ = _parse_id(tokens[1])
    dlc = _parse_dlc(tokens[2])
    data = tokens[3:]
    for b in data:
        if len(b) > 2 or not _HEX_TOKEN.fullmatch(b):
            raise _BadMessage(f"bad data byte {_printable(b)!r} (1 or 2 hex digits)")
    if len(data) != dlc:
        raise _BadMessage(f"DLC {dlc} does not match the {len(data)} data bytes")
    return ident, b"".join(b"%02X" % int(b, 16) for b in data)


class Hub:
    """A socketcand-protocol CAN hub on a TCP port (127.0.0.1 unless told otherwise).

    ``start()`` binds (port 0 picks a free port; see ``address``) and serves
    in a background thread; ``stop()`` closes every socket and joins it. Both
    are idempotent; the hub is also a context manager. ``serve_forever()``
    starts it and blocks until ``stop()`` or Ctrl-C. See the module docstring
    for the protocol, the order guarantee and the overflow policy.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        max_queue: int = 100_000,
        log_interval_s: float = 10.0,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"must be 0..65535 (0: any free port), got {port}", field="port")
        if max_queue < 1:
            raise ConfigError(f"must be at least 1, got {max_queue}", field="max_queue")
        self.host = host
        self.port = port
        self.max_queue = max_queue
        self.log_interval_s = log_interval_s
        self._rlog = _RateLimitedLog(log_interval_s)
        self._lock = threading.Lock()  # start/stop
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._failure: BaseException | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._sel: selectors.BaseSelector | None = None
        self._clients: dict[socket.socket, _Client] = {}
        self._rooms: dict[bytes, list[_Client]] = {}  # channel -> its rawmode clients
        self._held: set[_Client] = set()
        self._dirty: set[_Client] = set()
        self._frames_in = 0
        self._frames_out = 0
        self._dropped = 0
        self._bad_messages = 0

    # ---------------------------------------------------------------- public API

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the hub listens on; the real port when 0 was asked for."""
        if self._address is None:
            raise RuntimeError("the hub has not been started")
        return self._address

    @property
    def stats(self) -> HubStats:
        return HubStats(
            clients=len(self._clients),
            frames_in=self._frames_in,
            frames_out=self._frames_out,
            dropped=self._dropped,
            bad_messages=self._bad_messages,
        )

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Bind and serve in a background thread. Raises CanLinkError when the port
        cannot be had (in use, an address not on this machine)."""
        with self._lock:
            if self._thread is not None:
                return
            where = f"cannot listen on {self.host}:{self.port}"
            try:
                found = socket.getaddrinfo(
                    self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )
            except socket.gaierror as exc:
                raise CanLinkError(f"{where}: unknown host ({exc.strerror})") from exc
            # IPv4 first: python-can's client connects over IPv4 only
            found.sort(key=lambda info: info[0] != socket.AF_INET)
            family, sockaddr = found[0][0], found[0][4]
            try:
                listener = socket.create_server(sockaddr[:2], family=family, backlog=64)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    why = "the port is in use (another hub, or socketcand?); pick another port"
                else:
                    why = os.strerror(exc.errno) if exc.errno else str(exc)
                raise CanLinkError(f"{where}: {why}") from exc
            listener.setblocking(False)
            host, port = listener.getsockname()[:2]
            self._address = (host, port)
            if not _is_loopback(host):
                _log.warning(
                    "listening on %s:%d, which is not a loopback address: the bus is reachable "
                    "from the network, with no authentication",
                    host,
                    port,
                )
            self._listener = listener
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._sel = selectors.DefaultSelector()
            self._sel.register(listener, selectors.EVENT_READ, None)
            self._sel.register(self._wake_r, selectors.EVENT_READ, None)
            self._stopping.clear()
            self._stopped.clear()
            self._failure = None
            self._thread = threading.Thread(target=self._run, name="bms-can-hub", daemon=True)
            self._thread.start()
            _log.debug("hub listening on %s:%d (socketcand protocol)", host, port)

    def stop(self) -> None:
        """Close the listening socket and every client; returns within about 1 s."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stopping.set()
            self._wake()
            thread.join(timeout=1.0)
            if thread.is_alive():  # pragma: no cover - the loop never blocks
                _log.error("the hub thread did not stop within 1 s")
            self._thread = None

    def serve_forever(self) -> None:
        """Start (if needed) and block until ``stop()`` (from another thread or a
        signal handler) or KeyboardInterrupt; the hub is stopped on the way out."""
        self.start()
        try:
            while not self._stopped.wait(_IDLE_WAIT_S):
                pass
        finally:
            self.stop()
        if self._failure is not None:
            raise RuntimeError("the hub stopped on an internal error") from self._failure

    def __enter__(self) -> Hub:
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
        where = f"{self._address[0]}:{self._address[1]}" if self._address else "not started"
        return f"<Hub {where} {'running' if self.running else 'stopped'}: {self.stats}>"

    # ---------------------------------------------------------------- the loop

    def _wake(self) -> None:
        w = self._wake_w
        if w is not None:
            try:
                w.send(b"x")
            except OSError:
                pass

    def _run(self) -> None:
        sel = self._sel
        assert sel is not None
        try:
            while not self._stopping.is_set():
                timeout = _IDLE_WAIT_S
                if self._held:
                    now = time.monotonic()
                    timeout = max(0.0, min(c.hold_until for c in self._held) - now)
                for key, mask in sel.select(timeout):
                    client = key.data
                    if client is None:
                        if key.fileobj is self._listener:
                            self._accept()
                        else:
                            self._drain_wake()
                    elif client.sock in self._clients:  # not closed earlier in this round
                        if mask & selectors.EVENT_READ:
                            self._guarded(self._read, client)
                        if mask & selectors.EVENT_WRITE:
                            self._dirty.add(client)
                if self._held:
                    now = time.monotonic()
                    for c in [c for c in self._held if c.hold_until <= now]:
                        self._held.discard(c)
                        c.hold_until = 0.0
                        self._dirty.add(c)
                while self._dirty:
                    self._guarded(self._flush, self._dirty.pop())
        except BaseException as exc:  # pragma: no cover - a bug in the loop itself
            self._failure = exc
            _log.exception("the hub stopped on an internal error")
        finally:
            try:
                self._shutdown()
            finally:
                self._stopped.set()

    def _guarded(self, step: Callable[[_Client], None], c: _Client) -> None:
        try:
            step(c)
        except Exception:  # a bug: lose this client, never the hub
            _log.exception("internal error serving %s; disconnecting it", c.name)
            self._close(c, "internal error")

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _accept(self) -> None:
        assert self._listener is not None and self._sel is not None
        while True:
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving the clients we have
                self._rlog.warning(("accept", ""), "cannot accept a connection: %s", exc)
                return
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass
            client = _Client(sock, f"{peer[0]}:{peer[1]}")
            self._clients[sock] = client
            self._sel.register(sock, selectors.EVENT_READ, client)
            _log.info("client %s connected (%d now)", client.name, len(self._clients))
            self._reply(client, b"< hi >")

    def _read(self, c: _Client) -> None:
        try:
            data = c.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(c, f"connection lost: {exc}")
            return
        if not data:
            self._close(c, "closed by the client")
            return
        stamp = b"%.6f" % time.time()
        c.inbuf += data
        self._parse(c, stamp)

    def _parse(self, c: _Client, stamp: bytes) -> None:
        """Take every complete ``< ... >`` message out of the client's buffer."""
        buf = c.inbuf
        n = len(buf)
        pos = 0
        while pos < n:
            if c.skipping:
                end = buf.find(b">", pos)
                if end < 0:
                    pos = n
                    break
                c.skipping = False
                pos = end + 1
                continue
            start = buf.find(b"<", pos)
            junk_end = n if start < 0 else start
            if junk_end > pos and buf[pos:junk_end].strip():
                self._bad(c, f"data outside a message: {_printable(buf[pos:junk_end])!r}")
            if start < 0:
                pos = n
                break
            end = buf.find(b">", start + 1)
            if end < 0:
                if n - start > MAX_MESSAGE_BYTES:
                    self._bad(c, f"message longer than {MAX_MESSAGE_BYTES} bytes")
                    c.skipping = True
                    pos = n
                else:
                    pos = start  # incomplete: wait for more
                break
            pos = end + 1
            if end - start + 1 > MAX_MESSAGE_BYTES:
                self._bad(c, f"message longer than {MAX_MESSAGE_BYTES} bytes")
                continue
            inner = buf.rfind(b"<", start + 1, end)
            if inner >= 0:  # '<' before the '>' of the previous message
                self._bad(c, f"message without its end: {_printable(buf[start:inner])!r}")
                start = inner
            self._command(c, bytes(buf[start + 1 : end]), stamp)
        del buf[:pos]

    def _command(self, c: _Client, body: bytes, stamp: bytes) -> None:
        m = _SEND_RE.fullmatch(body)
        if m is not None and c.channel is not None:  # the hot path: a well-formed send
            tok = m.group(1)
            value = int(tok, 16)
            if len(tok) == 8:
                ident = b"%08X" % value if value <= 0x1FFFFFFF else None
            else:
                ident = b"%03X" % value if value <= 0x7FF else None
            data = m.group(3).split()
            if ident is not None and len(data) == int(m.group(2)):
                hexdata = b"".join(b"%02X" % int(b, 16) for b in data)
                self._forward(c, b"< frame %s %s %s >" % (ident, stamp, hexdata))
                return
        try:
            self._slow_command(c, body, stamp)
        except _BadMessage as exc:
            self._bad(c, str(exc))

    def _slow_command(self, c: _Client, body: bytes, stamp: bytes) -> None:
        try:
            body.decode("ascii")
        except UnicodeDecodeError:
            raise _BadMessage(f"not ASCII: {_printable(body)!r}") from None
        tokens = body.split()
        if not tokens:
            raise _BadMessage("empty message")
        cmd = tokens[0]
        if cmd == b"echo" and len(tokens) == 1:
            self._reply(c, b"< echo >")
            return
        if cmd == b"open":
            if len(tokens) != 2 or not 1 <= len(tokens[1]) <= _MAX_CHANNEL_NAME:
                raise _BadMessage(f"open needs one channel name of 1..{_MAX_CHANNEL_NAME} chars")
            if c.channel is not None:
                raise _BadMessage(f"channel {c.channel.decode()} is already open")
            c.channel = tokens[1]
            _log.info("client %s opened channel %s", c.name, c.channel.decode())
            self._reply(c, b"< ok >")
            return
        if cmd in (b"rawmode", b"bcmmode", b"send", b"sendrtr") and c.channel is None:
            raise _BadMessage(f"open a channel first (open vcan0), then {cmd.decode()}")
        if cmd == b"rawmode" and len(tokens) == 1:
            self._reply(c, b"< ok >")
            if not c.raw:
                # python-can reads this ok on its own: frames wait a moment (docstring)
                self._flush(c)
                c.raw = True
                c.hold_until = time.monotonic() + RAWMODE_SETTLE_S
                self._held.add(c)
                assert c.channel is not None
                self._rooms.setdefault(c.channel, []).append(c)
            return
        if cmd == b"bcmmode" and len(tokens) == 1:
            self._leave_room(c)
            self._reply(c, b"< ok >")
            return
        if cmd == b"send":
            ident, hexdata = _diagnose_send(tokens)
            self._forward(c, b"< frame %s %s %s >" % (ident, stamp, hexdata))
            return
        if cmd == b"sendrtr":
            if len(tokens) != 3:
                raise _BadMessage("sendrtr needs an id and a DLC, as in: sendrtr 123 8")
            ident, _ = _parse_id(tokens[1])
            dlc = _parse_dlc(tokens[2])
            self._forward(c, b"< rtr %s %s %d >" % (ident, stamp, dlc))
            return
        name = _printable(cmd, 20)
        if cmd in (b"echo", b"rawmode", b"bcmmode"):
            raise _BadMessage(f"{name} takes no arguments")
        if cmd in _UNSUPPORTED:
            raise _BadMessage(f"{name} is not supported by this hub (rawmode, send, echo only)")
        raise _BadMessage(f"unknown command {name!r}")

    # ---------------------------------------------------------------- output

    def _forward(self, sender: _Client, msg: bytes) -> None:
        """One frame from ``sender`` to every other rawmode client on its channel."""
        sender.frames_in += 1
        self._frames_in += 1
        assert sender.channel is not None
        for c in self._rooms.get(sender.channel, ()):
            if c is not sender:
                self._enqueue(c, msg)

    def _reply(self, c: _Client, msg: bytes) -> None:
        self._enqueue(c, msg)

    def _enqueue(self, c: _Client, msg: bytes) -> None:
        if len(c.out) >= self.max_queue:
            c.dropped += 1
            self._dropped += 1
            if not c.overflowing:
                c.overflowing = True
                self._rlog.warning(
                    ("overflow", c.name),
                    "client %s is not reading: its queue of %d messages is full; dropping "
                    "frames for it until it reads again",
                    c.name,
                    self.max_queue,
                )
            return
        c.out.append(msg)
        self._dirty.add(c)

    def _bad(self, c: _Client, reason: str) -> None:
        c.bad += 1
        self._bad_messages += 1
        self._rlog.warning(("bad", c.name), "bad message from %s: %s", c.name, reason)
        text = reason.replace("<", "?").replace(">", "?").encode("ascii", "replace")
        self._reply(c, b"< error %s %.6f %s >" % (_ERROR_CLASS, time.time(), text))

    def _flush(self, c: _Client) -> None:
        """Write what the kernel takes now; ask for EVENT_WRITE when something is left."""
        if c.sock not in self._clients:
            return
        while True:
            if c.pending is None:
                if not c.out or c.hold_until:
                    break
                k = min(len(c.out), _BATCH)
                items = [c.out.popleft() for _ in range(k)]
                c.pending = memoryview(b"".join(items))
                c.pending_frames = sum(1 for m in items if m.startswith(_FRAME_PREFIXES))
            try:
                sent = c.sock.send(c.pending)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._close(c, f"connection lost: {exc}")
                return
            if sent < len(c.pending):
                c.pending = c.pending[sent:]
                break
            c.pending = None
            c.frames_out += c.pending_frames
            self._frames_out += c.pending_frames
        if c.overflowing and len(c.out) < self.max_queue // 2:
            c.overflowing = False
            self._rlog.warning(
                ("recovered", c.name),
                "client %s reads again; %d frames dropped for it so far",
                c.name,
                c.dropped,
            )
        want = c.pending is not None or (bool(c.out) and not c.hold_until)
        if want != c.want_write:
            c.want_write = want
            assert self._sel is not None
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            self._sel.modify(c.sock, events, c)

    # ---------------------------------------------------------------- teardown

    def _leave_room(self, c: _Client) -> None:
        if c.raw and c.channel is not None:
            room = self._rooms.get(c.channel, [])
            if c in room:
                room.remove(c)
            if not room:
                self._rooms.pop(c.channel, None)
        c.raw = False
        c.hold_until = 0.0
        self._held.discard(c)

    def _close(self, c: _Client, why: str) -> None:
        if self._clients.pop(c.sock, None) is None:
            return
        self._leave_room(c)
        self._dirty.discard(c)
        if self._sel is not None:
            try:
                self._sel.unregister(c.sock)
            except (KeyError, ValueError):  # pragma: no cover
                pass
        c.sock.close()
        self._rlog.forget(c.name)
        _log.info(
            "client %s disconnected (%s): %d frames in, %d out, %d dropped, %d bad messages; "
            "%d clients left",
            c.name,
            why,
            c.frames_in,
            c.frames_out,
            c.dropped,
            c.bad,
            len(self._clients),
        )

    def _shutdown(self) -> None:
        for c in list(self._clients.values()):
            if c.pending is not None:  # one last try, never waiting
                try:
                    c.sock.send(c.pending)
                except OSError:
                    pass
            self._close(c, "hub stopped")
        for s in (self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        if self._sel is not None:
            self._sel.close()
        self._listener = self._wake_r = self._wake_w = None
        self._sel = None
        self._rooms.clear()
        self._held.clear()
        self._dirty.clear()
        _log.debug("hub stopped: %s", self.stats)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
