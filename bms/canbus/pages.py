"""Array values in pages: every page of a message encoded, or decoded, in one kernel call.

A pack's 200 cell voltages travel as 67 frames of one message, page p carrying
elements ``p*k .. p*k+k-1`` in the same ``k`` signals (same bits, same
scaling), a page-number signal, an alive counter and a CRC byte. Frame by
frame that is 67 trips through Python; here one numba call packs every page
into its bytes, CRC included, and one call unpacks them into the receiver's
array, with the checks a receiver makes: rows that fail their CRC are
skipped, a repeated alive counter drops its frame, a jump is counted, a value
outside the DBC's range becomes NaN and is counted, a page number outside the
array is ignored.

The arithmetic is the codec's (physical -> raw as ``(x - offset) / scale``
rounded half to even and clamped to the bit range; raw -> physical as
``raw * scale + offset`` in float64), so the bytes equal the frame-by-frame
path's, which the tests check. A layout this cannot express (IEEE float or
64-bit signals, frames over 8 bytes, scalars on a page, pages of different
layouts) is sent frame by frame by the link instead: :meth:`PagedArray.of`
returns None for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bms._jit import inline, kernel
from bms.canbus.crc import CRC8_TABLES

if TYPE_CHECKING:
    from bms.canbus.binding import BoundMessage
    from bms.canbus.codec import BitLayout, MessageCodec

__all__ = ["DecodeCounts", "PagedArray", "decode_pages_kernel", "encode_pages_kernel"]

# rows of the layout tables: elements 0..k-1, then the page number, then the counter
_BIG, _SHIFT, _LENGTH, _SIGNED = range(4)
_SCALE, _OFFSET, _RAW_LO, _RAW_HI, _NAN_RAW = range(5)


@kernel
def encode_pages_kernel(
    values, factor, as_flag, fill_raw, page_raw, lay_i, lay_f, masks, count0, count_mod, base,
    crc, out,
):  # pragma: no cover - numba  # fmt: skip
    """Pack page p of ``values`` (elements p*k .. p*k+k-1; past the end: NaN) into row p of
    ``out`` (n_pages, length uint8), every other bit from ``base`` (a little-endian word).

    An element is ``values[i] * factor`` in the signal's unit, or for a switch 1 when
    ``values[i] > 0.5``, else 0. NaN encodes as ``fill_raw`` ("not available"). The page
    number is ``page_raw[p]``; the counter (row k+1, length 0 when there is none) is
    ``(count0 + p) % count_mod``. ``crc`` = [byte index (-1: none), start value, final
    xor, then the 256-entry table]. Returns how many values were clamped to the bit range."""
    n_pages, length = out.shape
    k = fill_raw.size
    n_values = values.size
    clamped = 0
    for p in range(n_pages):
        le = base
        be = np.uint64(0)
        for j in range(k + 2):
            if lay_i[j, _LENGTH] == 0:
                continue
            if j < k:
                i = p * k + j
                x = values[i] if i < n_values else np.nan
                if as_flag:
                    x = 1.0 if x > 0.5 else 0.0
                else:
                    x = x * factor
                if math.isnan(x):
                    raw = fill_raw[j]
                else:
                    raw = np.rint((x - lay_f[j, _OFFSET]) / lay_f[j, _SCALE])
                    if raw > lay_f[j, _RAW_HI]:
                        raw = lay_f[j, _RAW_HI]
                        clamped += 1
                    elif raw < lay_f[j, _RAW_LO]:
                        raw = lay_f[j, _RAW_LO]
                        clamped += 1
                    elif math.isnan(raw):  # (x - offset) / scale of an infinity
                        raw = lay_f[j, _NAN_RAW]
                        clamped += 1
            elif j == k:
                raw = page_raw[p]
            else:
                c = float((count0 + p) % count_mod)
                raw = np.rint((c - lay_f[j, _OFFSET]) / lay_f[j, _SCALE])
                raw = min(max(raw, lay_f[j, _RAW_LO]), lay_f[j, _RAW_HI])
            bits = np.uint64(np.int64(raw)) & masks[j]
            bits = bits << np.uint64(lay_i[j, _SHIFT])
            if lay_i[j, _BIG]:
                be |= bits
            else:
                le |= bits
        for b in range(length):
            lo_byte = (le >> np.uint64(8 * b)) & np.uint64(0xFF)
            hi_byte = (be >> np.uint64(8 * (7 - b))) & np.uint64(0xFF)
            out[p, b] = np.uint8(lo_byte | hi_byte)
        if crc[0] >= 0:
            out[p, crc[0]] = _crc8(out[p], crc)
    return clamped


@inline
def _crc8(row, crc):  # pragma: no cover - numba
    """CRC-8 of ``row`` without its CRC byte (``crc`` as in the kernels)."""
    reg = crc[1]
    for b in range(row.size):
        if b != crc[0]:
            reg = crc[3 + (reg ^ row[b])]
    return reg ^ crc[2]


@inline
def _phys(le, be, lay_i, lay_f, masks, j):  # pragma: no cover - numba
    """The physical value of layout row ``j`` in the frame read as ``le`` and ``be``."""
    word = be if lay_i[j, _BIG] else le
    bits = (word >> np.uint64(lay_i[j, _SHIFT])) & masks[j]
    raw = np.int64(bits)
    length = lay_i[j, _LENGTH]
    if lay_i[j, _SIGNED] and raw >= np.int64(1) << (length - 1):
        raw -= np.int64(1) << length
    return float(raw) * lay_f[j, _SCALE] + lay_f[j, _OFFSET]


@kernel
def decode_pages_kernel(
    frames, crc, lay_i, lay_f, masks, count_mod, last, lo, hi, as_flag, factor, n_lim,
    arr, arr_time, t_s, counts,
):  # pragma: no cover - numba  # fmt: skip
    """Unpack the rows of ``frames`` into ``arr`` (element / factor, or for a switch 1.0
    when the signal is not 0) and stamp ``arr_time`` with ``t_s``.

    A row whose CRC (``crc`` as in the encoder) does not match is skipped and counted.
    Counter (row k+1 of the layout, length 0 when there is none): a repeat of ``last``
    drops the row, a step other than one is counted and accepted. Elements outside
    [``lo``, ``hi``] become NaN; indices at or past ``n_lim`` are ignored. ``counts``
    gets [jumps, repeats, out of range, rows stored, bad CRC]; returns the last counter."""
    n, length = frames.shape
    k = lay_i.shape[0] - 2
    for r in range(n):
        if crc[0] >= 0 and _crc8(frames[r], crc) != frames[r, crc[0]]:
            counts[4] += 1
            continue
        le = np.uint64(0)
        be = np.uint64(0)
        for b in range(length):
            byte = np.uint64(frames[r, b])
            le |= byte << np.uint64(8 * b)
            be |= byte << np.uint64(8 * (7 - b))
        if lay_i[k + 1, _LENGTH]:
            c = int(_phys(le, be, lay_i, lay_f, masks, k + 1))
            if last >= 0:
                step = (c - last) % count_mod
                if step == 0:
                    counts[1] += 1
                    continue
                if step != 1:
                    counts[0] += 1
            last = c
        page = int(_phys(le, be, lay_i, lay_f, masks, k))
        counts[3] += 1
        for j in range(k):
            i = page * k + j
            if i < 0 or i >= n_lim:
                continue
            v = _phys(le, be, lay_i, lay_f, masks, j)
            if not lo <= v <= hi:
                counts[2] += 1
                v = np.nan
            if as_flag:
                arr[i] = 1.0 if v != 0 else 0.0
            else:
                arr[i] = v / factor
            arr_time[i] = t_s
    return last


@dataclass
class DecodeCounts:
    """What one call of :meth:`PagedArray.decode` found."""

    counter_jump: int
    counter_repeat: int
    out_of_range: int
    stored: int  # rows whose values reached the array
    bad_crc: int
    last_counter: int


class PagedArray:
    """The compiled pages of one array message (see the module docstring)."""

    def __init__(
        self,
        bm: BoundMessage,
        layouts: list[BitLayout | None],
        n: int,
        value_range: tuple[float, float] | None,
    ):
        codec = bm.codec
        first = bm.pages[0].slots
        self.k = k = len(first)
        self.n_pages = len(bm.pages)
        self.n = n  # elements the pages carry
        self.length = codec.length
        self.factor = float(first[0].factor)
        self.as_flag = first[0].kind == "flag"
        rows = layouts  # the k elements, the page number, the counter (None: no counter)
        self.lay_i = np.zeros((k + 2, 4), np.int64)
        self.lay_f = np.zeros((k + 2, 5), np.float64)
        self.masks = np.zeros(k + 2, np.uint64)
        le_mask = be_mask = 0
        for j, lay in enumerate(rows):
            if lay is None:
                continue
            self.lay_i[j] = (lay.big, lay.shift, lay.length, lay.signed)
            self.lay_f[j] = (lay.scale, lay.offset, lay.raw_lo, lay.raw_hi, lay.nan_raw)
            mask = (1 << lay.length) - 1
            self.masks[j] = mask
            if lay.big:
                be_mask |= mask << lay.shift
            else:
                le_mask |= mask << lay.shift
        # "not available": every bit set, as the frame-by-frame path encodes it
        self.fill_raw = np.zeros(k)
        for j, s in enumerate(first):
            lay = rows[j]
            assert lay is not None
            raw = (1 << (lay.length - 1)) - 1 if lay.signed else (1 << lay.length) - 1
            self.fill_raw[j] = codec.to_raw(s.signal, codec.to_phys(s.signal, raw))
        assert bm.page_signal is not None
        self.page_raw = np.array(
            [codec.to_raw(bm.page_signal, pg.fixed[bm.page_signal]) for pg in bm.pages],
            dtype=np.float64,
        )
        # the rest of the frame: every other signal at its initial value, CRC byte 0
        init = bytes(codec.encode({bm.page_signal: 0})).ljust(8, b"\0")
        be_as_le = int.from_bytes(be_mask.to_bytes(8, "big"), "little")
        keep = ~(le_mask | be_as_le) & 0xFFFF_FFFF_FFFF_FFFF
        if bm.crc_byte >= 0:
            keep &= ~(0xFF << (8 * bm.crc_byte)) & 0xFFFF_FFFF_FFFF_FFFF
        self.base = np.uint64(int.from_bytes(init, "little") & keep)
        self.count_mod = bm.counter_mod if bm.counter is not None else 1
        self.has_counter = bm.counter is not None
        self.lo, self.hi = value_range if value_range is not None else (-math.inf, math.inf)
        self.out = np.zeros((self.n_pages, self.length), np.uint8)
        self.counts = np.zeros(5, np.int64)
        self.crc = np.full(3 + 256, -1, np.int64)
        if bm.crc_byte >= 0:
            table, start, xorout = CRC8_TABLES[bm.crc_algorithm]
            self.crc[:3] = (bm.crc_byte, start, xorout)
            self.crc[3:] = table

    @classmethod
    def of(cls, bm: BoundMessage, value_range: tuple[float, float] | None) -> PagedArray | None:
        """The compiled pages of ``bm``, or None when its layout needs frame by frame.
        ``value_range``: the elements' valid [low, high] (None: whatever the bits hold)."""
        codec = bm.codec
        if bm.array is None or bm.page_signal is None or codec.length > 8 or not bm.pages:
            return None
        first = bm.pages[0].slots
        k = bm.per_page
        if not first or len(first) != k or any(s.index != i for i, s in enumerate(first)):
            return None  # scalars on a page, or an unusual layout
        for p, page in enumerate(bm.pages):
            for i, s in enumerate(page.slots):
                if s.index != p * k + i or s.signal != first[i].signal:
                    return None
            if page.fixed.get(bm.page_signal) != p:
                return None
        layouts = [codec.bit_layout(s.signal) for s in first]
        if any(lay is None for lay in layouts):
            return None
        sig0 = _scaling(codec, first[0].signal)
        if any(_scaling(codec, s.signal) != sig0 for s in first[1:]):
            return None  # elements of different scaling
        page_lay = codec.bit_layout(bm.page_signal)
        counter_lay = codec.bit_layout(bm.counter) if bm.counter is not None else None
        if page_lay is None or (bm.counter is not None and counter_lay is None):
            return None
        if bm.crc_byte >= 0 and bm.crc_algorithm not in CRC8_TABLES:
            return None  # a CRC without a table: the registered function, frame by frame
        n = sum(len(pg.slots) for pg in bm.pages)
        return cls(bm, [*layouts, page_lay, counter_lay], n, value_range)

    def warm_up(self) -> None:
        """Compile (or load from the cache) both kernels for this message's argument types,
        before the bus goes live; nothing of the link's state changes."""
        frames, _ = self.encode(np.full(self.n, np.nan), 0)
        self.decode(frames.copy(), -1, np.zeros(self.n), np.zeros(self.n), 0.0)

    def encode(self, values: np.ndarray | None, count0: int) -> tuple[np.ndarray, int]:
        """Every page's frame (n_pages, length uint8, with its CRC; the array is reused by
        the next call) and how many values were clamped."""
        vals = values if values is not None else _EMPTY
        clamped = encode_pages_kernel(
            np.asarray(vals, dtype=np.float64),
            self.factor,
            self.as_flag,
            self.fill_raw,
            self.page_raw,
            self.lay_i,
            self.lay_f,
            self.masks,
            count0,
            self.count_mod,
            self.base,
            self.crc,
            self.out,
        )
        return self.out, int(clamped)

    def decode(
        self,
        frames: np.ndarray,
        last_counter: int,
        arr: np.ndarray,
        arr_time: np.ndarray,
        t_s: float,
    ) -> DecodeCounts:
        """The rows of ``frames`` into ``arr``/``arr_time`` (see the
        module docstring for the checks)."""
        c = self.counts
        c[:] = 0
        last = decode_pages_kernel(
            frames,
            self.crc,
            self.lay_i,
            self.lay_f,
            self.masks,
            self.count_mod,
            last_counter if self.has_counter else -1,
            self.lo,
            self.hi,
            self.as_flag,
            self.factor,
            min(arr.size, self.n),
            arr,
            arr_time,
            t_s,
            c,
        )
        return DecodeCounts(int(c[0]), int(c[1]), int(c[2]), int(c[3]), int(c[4]), int(last))


_EMPTY = np.zeros(0)


def _scaling(codec: MessageCodec, name: str) -> tuple[Any, ...]:
    sig = codec.message.get_signal_by_name(name)
    return (sig.length, sig.scale, sig.offset, sig.is_signed, sig.minimum, sig.maximum)
