"""The CAN link: named values in, frames out, and back, with every receive check.

``CanLink`` turns a node's values into frames through the binding (codec
compiled from the DBC, alive counter, CRC), hands them to the other local
nodes that receive them (the values the frame's bytes decode to, with the
counter, range and value-table checks of a received frame) and to the
python-can bus, and writes them to the log. Frames from the bus go through
the checks a real ECU makes before a value reaches a node:

- error frames, remote frames: counted, ignored;
- an identifier in no DBC: counted (``unknown_id``), ignored;
- a known message nobody here receives: fine (a monitor sees it too);
- a frame with the identifier of a message sent here: counted
  (``id_conflict``), ignored (two senders on one identifier);
- a wrong length (DLC): counted, ignored;
- a bad CRC: counted, ignored (the receive timeout then reacts, as in a BMS);
- an alive counter that repeats: counted, ignored (a stale frame); one that
  jumps: counted, accepted (frames were lost);
- a value outside the DBC's range or not in its value table: counted, and
  the node gets NaN (or no label) for it, which its firmware treats as an
  invalid reading.

Nothing raises out of the receive path; every drop is counted and logged,
rate-limited (the first of each kind with its identifier, then at most one
line per kind every ``log_interval_s`` of wall time with the count since, and
the rest at :meth:`CanLink.flush_log`; memory: one entry per kind).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import can
import numpy as np

from bms.canbus.binding import Binding, BoundMessage, Page
from bms.canbus.crc import CRC8
from bms.canbus.pages import PagedArray
from bms.canbus.programs import (
    Encoder,
    LocalReceiver,
    Receiver,
    local_program,
    receive_program,
    send_program,
)

__all__ = [
    "CanLink",
    "LinkStats",
    "NodeIO",
    "dbc_range",
    "frame_bits",
    "frame_crc",
    "matrix_load",
]

_log = logging.getLogger("bms.canbus")

ERROR_KINDS = (
    "error_frame",
    "remote_frame",
    "unknown_id",
    "id_conflict",
    "bad_dlc",
    "bad_crc",
    "counter_repeat",
    "counter_jump",
    "out_of_range",
    "decode_error",
    "send_error",
)


_MESSAGE_ARGS = (
    "timestamp",
    "arbitration_id",
    "is_extended_id",
    "is_remote_frame",
    "is_error_frame",
    "channel",
    "dlc",
    "data",
    "is_fd",
    "is_rx",
)


class _SentMessage(can.Message):
    """A data frame sent here, built without python-can's argument handling (see
    :func:`_message_factory`)."""

    __slots__ = ()

    def __init__(self, stamp: float, fid: int, ext: bool, data: bytearray) -> None:
        self.timestamp = stamp
        self.arbitration_id = fid
        self.is_extended_id = ext
        self.is_remote_frame = False
        self.is_error_frame = False
        self.channel = None
        self.is_fd = False
        self.is_rx = False
        self.bitrate_switch = False
        self.error_state_indicator = False
        self.data = data
        self.dlc = len(data)


def _message_factory() -> Callable[[float, int, bool, bytearray], can.Message]:
    """A sent data frame as a python-can Message (marked Tx, for a log), some 1,200 per
    simulated second. Fastest: a subclass whose constructor sets every field directly,
    when python-can's Message has exactly the fields it knows; else positional arguments
    (half the cost of keywords) when python-can's signature has the order they assume;
    else keywords. ``data`` must be a bytearray the Message may keep."""
    message = can.Message
    if _fields(message) == _SENT_FIELDS:
        return _SentMessage
    names = tuple(inspect.signature(message.__init__).parameters)[1 : 1 + len(_MESSAGE_ARGS)]
    if names == _MESSAGE_ARGS:

        def positional(stamp: float, fid: int, ext: bool, data: bytearray) -> can.Message:
            return message(stamp, fid, ext, False, False, None, None, data, False, False)

        return positional

    def keywords(stamp: float, fid: int, ext: bool, data: bytearray) -> can.Message:
        return message(
            timestamp=stamp,
            arbitration_id=fid,
            is_extended_id=ext,
            is_rx=False,
            data=data,
            check=False,
        )

    return keywords


# every field of a python-can Message as _SentMessage sets it
_SENT_FIELDS = frozenset((*_MESSAGE_ARGS, "bitrate_switch", "error_state_indicator"))


def _fields(cls: type) -> frozenset[str]:
    """The instance fields (slots) of a class with ``__slots__``, over its bases."""
    slots: set[str] = set()
    for klass in cls.__mro__:
        declared = klass.__dict__.get("__slots__", ())
        slots.update((declared,) if isinstance(declared, str) else declared)
    slots.discard("__weakref__")
    return frozenset(slots)


_new_message = _message_factory()


def frame_bits(dlc: int, extended: bool) -> int:
    """Worst-case bits on the wire of a classic data frame with ``dlc`` bytes, stuff bits
    and the 3-bit intermission included (Davis, Burns, Bril, Lukkien, "Controller Area
    Network (CAN) schedulability analysis", Real-Time Systems 35, 2007, eq. 1)."""
    g = 54 if extended else 34
    return 8 * dlc + g + 13 + (g + 8 * dlc - 1) // 4


class NodeIO(Protocol):
    """What the link needs of a node: its outputs, and somewhere to put its inputs."""

    name: str
    outputs: dict[str, Any]
    inputs: dict[str, Any]
    arrays: dict[str, np.ndarray]  # array inputs, filled element by element
    array_time: dict[str, np.ndarray]  # when each element was last received
    rx_time: dict[str, float]  # message name -> time of its last valid frame
    # the values the node reads (None: every value); a frame built here that carries none
    # of them is not delivered to it, as a controller's acceptance filter drops it (frames
    # from the bus still reach its receive checks: CanLink.route)
    consumes: frozenset[str] | None

    def on_message(self, t_s: float, name: str) -> None: ...

    # just before one of its messages is encoded (a sender made with prepare=True)
    def prepare(self, t_s: float, message: str) -> None: ...


@dataclass
class LinkStats:
    frames_tx: int = 0
    frames_rx: int = 0  # frames from the bus (other processes, hardware)
    frames_local: int = 0  # frames delivered between nodes of this process
    frames_unsent: int = 0  # frames for the bus while the link was down
    bits_tx: int = 0
    bits_rx: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames_sent": self.frames_tx,
            "frames_received": self.frames_rx,
            "frames_local": self.frames_local,
            "frames_unsent": self.frames_unsent,
            "errors": dict(self.errors),
            "error_total": sum(self.errors.values()),
        }


class _Tx:
    """Per-message encoder state: counter, CRC, enum maps."""

    def __init__(self, bm: BoundMessage):
        self.bm = bm
        self.codec = bm.codec
        self.count = 0
        self.crc_fn = CRC8[bm.crc_algorithm][0]
        self.bits = frame_bits(bm.codec.length, bm.codec.is_extended)
        self.fid, self.ext = bm.codec.frame_id, bm.codec.is_extended
        self.key = bm.key
        self.deliver: Receiver = _no_receiver  # the receive program of this message
        # the nodes here that receive it, and of those the ones that read it (CanLink.route)
        self.here: tuple[NodeIO, ...] = ()
        self.readers: tuple[NodeIO, ...] = ()
        codec = bm.codec
        self.enum_phys: dict[str, dict[str, float]] = {}
        for page in bm.pages:
            for s in page.slots:
                if s.kind == "enum" and s.signal not in self.enum_phys:
                    self.enum_phys[s.signal] = {
                        lb: codec.to_phys(s.signal, raw) for lb, raw in s.to_raw.items()
                    }
        self.fill: dict[str, float] = {}  # "not available": every bit set
        if bm.array is not None:
            for page in bm.pages:
                for s in page.slots:
                    sig = codec_signal(bm, s.signal)
                    raw = (1 << (sig.length - 1)) - 1 if sig.is_signed else (1 << sig.length) - 1
                    if s.kind == "flag":
                        raw = 0  # a switch that does not exist stays off
                    self.fill[s.signal] = codec.to_phys(s.signal, raw)
        self.batch = PagedArray.of(bm, _element_range(bm))
        # elements past the end of the array (the last page): "not available"
        self.extra: dict[int, dict[str, float]] = {}
        if bm.array is not None and bm.page_signal is not None:
            names = [s.signal for s in bm.pages[0].slots if s.index >= 0]
            for page in bm.pages:
                have = {s.signal for s in page.slots}
                missing = {n: self.fill[n] for n in names if n not in have}
                if missing:
                    self.extra[id(page)] = missing
        self.programs: list[Encoder] = [send_program(self, page) for page in bm.pages]
        # each page's frame into a node here, from its raw values (CanLink builds them)
        self.stores: list[LocalReceiver | None] = [None] * len(bm.pages)


def dbc_range(sig: Any) -> tuple[float, float] | None:
    """The DBC's [minimum, maximum] of a signal when it is narrower than what its bits can
    carry (then a received value outside it is out of range); None otherwise."""
    lo, hi = sig.minimum, sig.maximum
    if lo is None or hi is None or (lo == 0 and hi == 0):
        return None
    raw_lo = -(1 << (sig.length - 1)) if sig.is_signed else 0
    raw_hi = (1 << (sig.length - 1)) - 1 if sig.is_signed else (1 << sig.length) - 1
    p_lo, p_hi = sorted((raw_lo * sig.scale + sig.offset, raw_hi * sig.scale + sig.offset))
    if lo > p_lo + 1e-9 * abs(p_lo) or hi < p_hi - 1e-9 * abs(p_hi):
        return (lo - 1e-9 * abs(lo), hi + 1e-9 * abs(hi))
    return None


def matrix_load(binding: Binding) -> tuple[float, float]:
    """Frames per second and worst-case bits per second that the bound messages' DBC
    periods put on the bus (every page of a paged message once per period)."""
    frames = bits = 0.0
    for bm in binding.messages.values():
        if bm.period_s:
            n = len(bm.pages) / bm.period_s
            frames += n
            bits += n * frame_bits(bm.codec.length, bm.is_extended)
    return frames, bits


def codec_signal(bm: BoundMessage, name: str) -> Any:
    return bm.codec.message.get_signal_by_name(name)


def _element_range(bm: BoundMessage) -> tuple[float, float] | None:
    if bm.array is None or not bm.pages or not bm.pages[0].slots:
        return None
    return dbc_range(codec_signal(bm, bm.pages[0].slots[0].signal))


def _reads(node: NodeIO, values: set[str]) -> bool:
    consumes = getattr(node, "consumes", None)
    return consumes is None or not consumes.isdisjoint(values)


def _no_receiver(t_s: float, data: bytes | bytearray, node: NodeIO) -> None:
    raise AssertionError("the link compiles every receive program before the first frame")


_NOWHERE = np.zeros(0)  # a receiver without the array: the checks still run


def frame_crc(bm: BoundMessage, data: bytes | bytearray) -> int:
    """The CRC a frame of ``bm`` must carry in its CRC byte (over every other byte)."""
    return CRC8[bm.crc_algorithm][0](_without(data, bm.crc_byte))


def _without(data: bytes | bytearray, i: int) -> bytes:
    """The payload without byte ``i`` (the CRC's own byte)."""
    if i == len(data) - 1:
        return bytes(data[:i])
    return bytes(data[:i]) + bytes(data[i + 1 :])


class _Rx:
    """Per-message receive state: last counter, expected length, range limits."""

    def __init__(self, bm: BoundMessage):
        self.bm = bm
        self.last_counter: dict[str, int] = {}  # per receiving node
        crc = CRC8[bm.crc_algorithm]
        self.crc_fn = crc[0]
        self.ranges = {
            s.name: r for s in bm.codec.message.signals if (r := dbc_range(s)) is not None
        }
        self.page_of: dict[int, Page] = {}
        key = bm.page_signal or bm.codec.multiplexer
        for p in bm.pages:
            self.page_of[p.fixed.get(key, 0) if key else 0] = p
        self.page_key = key
        self.deliver: Receiver = _no_receiver  # compiled by the link (it counts the errors)
        self.here: tuple[NodeIO, ...] = ()  # the nodes here that receive it (CanLink.route)


class CanLink:
    """Frames between the nodes of this process and the bus (``bus`` may be None)."""

    def __init__(
        self,
        binding: Binding,
        nodes: dict[str, NodeIO],
        bus: can.BusABC | None = None,
        log_writer: can.Listener | None = None,
        log_interval_s: float = 10.0,
        timestamp: Callable[[float], float] | None = None,
    ):
        self.binding = binding
        self.nodes = nodes
        self.bus = bus
        self.writer = log_writer
        self.stats = LinkStats()
        self._tx = {name: _Tx(bm) for name, bm in binding.messages.items()}
        self._rx = {bm.key: _Rx(bm) for bm in binding.messages.values()}
        for rx in self._rx.values():
            rx.deliver = receive_program(self, rx)
        for tx in self._tx.values():
            rx = self._rx[tx.key]
            tx.deliver = rx.deliver
            tx.stores = [local_program(self, rx, page) for page in tx.bm.pages]
        self._local_tx = {bm.key for bm in binding.messages.values() if bm.sender in nodes}
        self.route()
        self._log_interval_s = log_interval_s
        self._logged: dict[str, tuple[int, str]] = {}  # kind -> last (identifier, text)
        self._last_log: dict[str, float] = {}  # kind -> wall time of its last line
        self._since_log: Counter[str] = Counter()  # kind -> errors not yet reported
        self._clock: Callable[[], float] = time.monotonic  # wall clock of the rate limit
        self.timestamp = timestamp  # simulated time -> a frame's timestamp (None: as is)
        self.bus_ok = True
        self.on_send_error: Callable[[Exception], None] | None = None
        # a tester's hooks (the HIL suite): ``taps`` see every frame sent here or received
        # (time, message or None, identifier, extended, bytes); ``tx_filter`` may drop,
        # change or hold back a frame before it leaves its sender (fault injection)
        self.taps: list[Callable[[float, BoundMessage | None, int, bool, bytes], None]] = []
        self.tx_filter: Callable[[float, BoundMessage, bytearray], bytes | None] | None = None
        self.filtered: set[str] = set()  # messages the filter sees (they go frame by frame)

    def route(self) -> None:
        """Find, for every message, the nodes here that receive it (its receivers in the
        binding that run here) and, of those, the ones that read one of its values
        (``consumes``). A frame built here and left intact goes only to its readers: it
        cannot fail a receive check, and a node does not decode what it does not read.
        A frame from the bus, or one a tester's filter let through, goes to every
        receiver here, so that a bad CRC or counter is counted wherever the binding
        says it is received. Done when the link is built and again when the emulator
        starts: a node swapped in between (a tester's vehicle controller) is routed too."""
        for tx in self._tx.values():
            bm = tx.bm
            values = bm.values()
            here = [n for r in bm.receivers if (n := self.nodes.get(r)) is not None]
            readers = [n for n in here if _reads(n, values)]
            tx.here = self._rx[tx.key].here = tuple(here)
            tx.readers = tuple(readers)

    def warm_up(self) -> None:
        """Compile (or load) the kernels of the paged messages before the bus goes live: a
        first call would stall every frame for the compile."""
        for tx in self._tx.values():
            if tx.batch is not None:
                tx.batch.warm_up()

    # ------------------------------------------------------------------ transmit

    def send(self, t_s: float, name: str, page: int | None = None) -> int:
        """Send message ``name`` from its sender's outputs: one page (``page``) or every
        page. Returns the number of frames sent."""
        tx = self._tx[name]
        out = self.nodes[tx.bm.sender].outputs
        if name not in self.filtered:
            if page is None and tx.batch is not None:
                return self._send_batch(t_s, tx, out)
            pages = range(len(tx.programs)) if page is None else (page,)
            for k in pages:
                data, encoded = tx.programs[k](out)
                self._emit(t_s, tx, data, tx.readers, encoded, tx.stores[k])
            return len(pages)
        n = 0
        for encode in tx.programs if page is None else (tx.programs[page],):
            data = encode(out)[0]
            if self.tx_filter is not None:
                kept = self.tx_filter(t_s, tx.bm, data)
                if kept is None:
                    continue
                data = bytearray(kept)
            self._emit(t_s, tx, data, tx.here)
            n += 1
        return n

    def sender(
        self, name: str, page: int | None = None, prepare: bool = False
    ) -> Callable[[float], int]:
        """``send(t_s)``: :meth:`send` of message ``name`` (one page, or every page) as one
        callable for a scheduler, for the emulator's some 400 single frames per simulated
        second: the usual frame (no tester's filter) is encoded and emitted without the
        look-ups of :meth:`send`. Bound to the sending node's outputs as it is now.
        ``prepare``: call the sending node's ``prepare(t_s, name)`` first (looked up at
        every frame, so a node's method may be replaced while it runs)."""
        tx = self._tx[name]
        node = self.nodes[tx.bm.sender]
        if page is None and len(tx.programs) == 1 and tx.batch is None:
            page = 0
        if page is None:

            def send_pages(t_s: float) -> int:
                if prepare:
                    node.prepare(t_s, name)
                return self.send(t_s, name)

            return send_pages
        encode = tx.programs[page]
        store = tx.stores[page]
        out = node.outputs
        filtered = self.filtered
        emit = self._emit

        def send(t_s: float) -> int:
            if prepare:
                node.prepare(t_s, name)
            if name in filtered:
                return self.send(t_s, name, page)
            data, encoded = encode(out)
            emit(t_s, tx, data, tx.readers, encoded, store)
            return 1

        return send

    def emit(self, t_s: float, name: str, data: bytes | bytearray) -> None:
        """Send ready-made bytes as message ``name`` (a frame held back by a tester's
        filter, or a deliberately corrupted one): to the local receivers and the bus."""
        tx = self._tx[name]
        self._emit(t_s, tx, bytearray(data), tx.here)

    def _send_batch(self, t_s: float, tx: _Tx, out: dict[str, Any]) -> int:
        bm, pages = tx.bm, tx.batch
        assert pages is not None
        data, clamped = pages.encode(out.get(bm.array or ""), tx.count)
        tx.codec.saturated += clamped
        n = pages.n_pages
        if bm.counter is not None:
            tx.count = (tx.count + n) % bm.counter_mod
        stats = self.stats
        stats.frames_tx += n
        stats.bits_tx += tx.bits * n
        if self.taps:
            raw_all = data.tobytes()
            w = data.shape[1]
            fid, ext = bm.codec.frame_id, bm.codec.is_extended
            for i in range(n):
                for tap in self.taps:
                    tap(t_s, bm, fid, ext, raw_all[i * w : (i + 1) * w])
        for node in tx.readers:
            stats.frames_local += n
            self._deliver_batch(t_s, self._rx[tx.key], node, data)
        if not self.bus_ok:
            stats.frames_unsent += n
        if (self.bus is not None and self.bus_ok) or self.writer is not None:
            self._put_rows(t_s, tx, bytearray(data.tobytes()), data.shape[1])
        return n

    def _emit(
        self,
        t_s: float,
        tx: _Tx,
        data: bytearray,
        to: tuple[NodeIO, ...],
        encoded: tuple[Any, ...] | None = None,
        store: LocalReceiver | None = None,
    ) -> None:
        """One frame to the nodes ``to`` here, the taps, the bus and the log. A frame built
        here and left intact comes with ``encoded`` (its raw values) and its page's
        ``store``, which hands it to a node as ``tx.deliver`` would (see
        :func:`~bms.canbus.programs.local_program`)."""
        stats = self.stats
        stats.frames_tx += 1
        stats.bits_tx += tx.bits
        if self.taps:
            raw = bytes(data)
            for tap in self.taps:
                tap(t_s, tx.bm, tx.fid, tx.ext, raw)
        if encoded is None or store is None:
            for node in to:
                stats.frames_local += 1
                tx.deliver(t_s, data, node)
        else:
            for node in to:
                stats.frames_local += 1
                store(t_s, encoded, node)
        if self.bus_ok:
            if self.bus is not None or self.writer is not None:
                self._put(t_s, tx, data)
        else:
            stats.frames_unsent += 1
            if self.writer is not None:
                self._put(t_s, tx, data)

    def _put(self, t_s: float, tx: _Tx, data: bytearray) -> None:
        """Onto the python-can bus and into the log."""
        stamp = t_s if self.timestamp is None else self.timestamp(t_s)
        msg = _new_message(stamp, tx.fid, tx.ext, data)
        bus = self.bus
        if bus is not None and self.bus_ok:
            try:
                bus.send(msg, timeout=0.05)
            except (can.CanError, OSError, ValueError) as exc:
                self._send_failed(tx, exc, t_s)
        if self.writer is not None:
            self.writer.on_message_received(msg)

    def _send_failed(self, tx: _Tx, exc: Exception, t_s: float) -> None:
        self._count("send_error", tx.fid, f"{tx.bm.name}: {exc}", t_s)
        if self.on_send_error is not None:
            self.on_send_error(exc)

    def _put_rows(self, t_s: float, tx: _Tx, raw: bytearray, width: int) -> None:
        """:meth:`_put` for consecutive frames of ``width`` bytes in ``raw``."""
        stamp = t_s if self.timestamp is None else self.timestamp(t_s)
        bus = self.bus if self.bus_ok else None
        writer = self.writer
        new = _new_message
        fid, ext = tx.fid, tx.ext
        for i in range(0, len(raw), width):
            msg = new(stamp, fid, ext, raw[i : i + width])
            if bus is not None:
                try:
                    bus.send(msg, timeout=0.05)
                except (can.CanError, OSError, ValueError) as exc:
                    self._send_failed(tx, exc, t_s)
            if writer is not None:
                writer.on_message_received(msg)

    # ------------------------------------------------------------------ receive

    def receive(self, t_s: float, msg: can.Message) -> None:
        """A frame from the bus: checked, decoded, handed to the local receivers."""
        self.stats.frames_rx += 1
        if self.writer is not None:
            logged = can.Message(
                timestamp=t_s if self.timestamp is None else self.timestamp(t_s),
                arbitration_id=msg.arbitration_id,
                is_extended_id=msg.is_extended_id,
                is_remote_frame=msg.is_remote_frame,
                is_error_frame=msg.is_error_frame,
                dlc=msg.dlc,
                data=msg.data,
                is_rx=True,
                check=False,
            )
            self.writer.on_message_received(logged)
        aid = msg.arbitration_id
        if self.taps and not msg.is_error_frame and not msg.is_remote_frame:
            rx_bm = self._rx.get((aid, bool(msg.is_extended_id)))
            raw = bytes(msg.data)
            for tap in self.taps:
                tap(t_s, rx_bm.bm if rx_bm else None, aid, bool(msg.is_extended_id), raw)
        if msg.is_error_frame:
            self._count("error_frame", aid, "error frame on the bus", t_s)
            return
        self.stats.bits_rx += frame_bits(len(msg.data), msg.is_extended_id)
        if msg.is_remote_frame:
            self._count("remote_frame", aid, "remote frame ignored", t_s)
            return
        key = (aid, bool(msg.is_extended_id))
        rx = self._rx.get(key)
        if rx is None:
            known = self.binding.known.get(key)
            if known is None:
                self._count("unknown_id", aid, "identifier in no DBC file", t_s)
            return
        if key in self._local_tx:
            self._count("id_conflict", aid, f"{rx.bm.name} is sent here and by another node", t_s)
            return
        for node in rx.here:
            rx.deliver(t_s, bytes(msg.data), node)

    def _deliver_batch(self, t_s: float, rx: _Rx, node: NodeIO, data: np.ndarray) -> None:
        """Every page of an array message at once, with the checks of frame by frame."""
        bm = rx.bm
        codec = bm.codec
        pages = self._tx[bm.name].batch
        assert pages is not None
        arr = node.arrays.get(bm.array or "")
        if arr is None:
            arr = _NOWHERE
            times = _NOWHERE
        else:
            times = node.array_time[bm.array or ""]
        got = pages.decode(data, rx.last_counter.get(node.name, -1), arr, times, t_s)
        if bm.counter is not None and got.last_counter >= 0:
            rx.last_counter[node.name] = got.last_counter
        fid = codec.frame_id
        if got.bad_crc:
            self._count("bad_crc", fid, f"{bm.name}: CRC mismatch", t_s, got.bad_crc)
        if got.counter_jump:
            self._count("counter_jump", fid, f"{bm.name}: frames lost", t_s, got.counter_jump)
        if got.counter_repeat:
            self._count("counter_repeat", fid, f"{bm.name}: repeated", t_s, got.counter_repeat)
        if got.out_of_range:
            self._count(
                "out_of_range", fid, f"{bm.name}: {got.out_of_range} values", t_s, got.out_of_range
            )
        if got.stored and arr is not _NOWHERE:
            node.rx_time[bm.name] = t_s
            node.on_message(t_s, bm.name)

    # ------------------------------------------------------------------ bookkeeping

    def _count(self, kind: str, frame_id: int, text: str, t_s: float, n: int = 1) -> None:
        """Count ``n`` errors of ``kind``; log the first of a kind at once, then at most one
        line per kind every ``log_interval_s`` of wall time, whatever the identifiers (a
        flood in virtual time is still a flood for whoever reads the log). Memory: one
        entry per kind."""
        self.stats.errors[kind] += n
        now = self._clock()
        if kind not in self._logged:
            self._logged[kind] = (frame_id, text)
            self._last_log[kind] = now
            _log.warning("t=%.3f s id 0x%X: %s: %s", t_s, frame_id, kind.replace("_", " "), text)
            self._since_log[kind] += n - 1
            return
        self._logged[kind] = (frame_id, text)
        self._since_log[kind] += n
        if now - self._last_log[kind] >= self._log_interval_s:
            self._last_log[kind] = now
            self._report(kind)

    def _report(self, kind: str) -> None:
        frame_id, text = self._logged[kind]
        _log.warning(
            "%s: %d more since the last report (last: id 0x%X, %s)",
            kind.replace("_", " "),
            self._since_log[kind],
            frame_id,
            text,
        )
        self._since_log[kind] = 0

    def flush_log(self) -> None:
        """Log the errors counted since the last line of each kind (at shutdown, so that
        the rate limit loses no count)."""
        for kind in list(self._since_log):
            if self._since_log[kind] > 0 and kind in self._logged:
                self._report(kind)

    def bus_load(self, bitrate: int, seconds: float) -> float:
        """Fraction of the bus's capacity used by frames sent and received here."""
        if seconds <= 0 or bitrate <= 0:
            return 0.0
        return (self.stats.bits_tx + self.stats.bits_rx) / (bitrate * seconds)
