"""Fast, exact frame codec for the hot path of the CAN emulator.

A ``MessageCodec`` is built once from a cantools ``Message`` and then encodes and
decodes that message's frames several times faster than cantools, with
bit-identical results. Every layout fact (start bit, length, byte order,
signedness, scale, offset, value table, initial value, minimum and maximum,
multiplexing) is read from the cantools object; nothing about a message is
written into Python by hand.

How it is fast: for each page layout the codec generates a small Python function
with the layout constants inlined and compiles it once (the technique of
``dataclasses`` and ``namedtuple``); pages and messages with the same layout share
the compiled code. The frame is one integer: ``int.from_bytes(data, "little")``
for Intel signals (shift = start bit), ``int.from_bytes(data, "big")`` for
Motorola signals (shift = 8 * frame length - network bit number of the MSB - bit
length). Physical -> raw repeats cantools' arithmetic: ``(value - offset) / scale``
rounded half to even, and the ``divmod`` path of integer-scaled signals. Raw ->
physical is ``raw * scale + offset`` with the very numbers cantools uses, so a
signal that decodes to an int in cantools decodes to an int here.

Out-of-range values are clamped to the signal's raw bit range (never wrapped)
and counted in ``saturated``; NaN encodes as the raw value of the signal's DBC
minimum (0 without one) and is counted too. A signal without a value takes its
DBC initial value (``GenSigStartValue``), else raw 0.

Batches (``encode_batch``/``decode_batch``, frames of at most 8 bytes) run on numpy
uint64 frames in float64 arithmetic (the same IEEE operations as the scalar path
for raw values below 2**52; longer and IEEE-float signals take an exact
element-by-element lane). Columns are 1-D arrays of length n or scalars
(broadcast); choice names are not accepted there.

Multiplexing (one multiplexer signal): ``encode`` needs the multiplexer value and
encodes that page's signals, ignoring keys of other pages; ``decode`` returns the
page's signals plus the multiplexer and the unmultiplexed ones. In a batch every
row may be a different page: the multiplexer column picks it, and a signal's
column (array or scalar) is used on the rows whose page holds that signal. Page
signals at the same bits with the same scaling on different pages (the usual
"page k carries cells 3k+1..3k+3") form one vectorized slot, so 67 pages of cell
voltages go out as ``encode_batch({"Mux": np.arange(67), "Cell1_V": 3.301, ...})``
with one number per cell. ``decode_batch`` returns a float64 column per page
signal, NaN on rows whose page lacks it; the multiplexer and the unmultiplexed
signals come back as full columns (int64 where cantools returns ints, else
float64). A DBC that sends the triple index as an ordinary signal (``Mux``,
``Cell1``..``Cell3`` all unmultiplexed) is an ordinary message here: one column
per signal, one row per frame.

Messages with nested multiplexers, or with a layout the generated code cannot
express, go through cantools internally behind the same API (clamping and
counting still apply); frames longer than 8 bytes use the compiled scalar path
row by row in the batch methods.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
from cantools.database.can import Message, Signal
from cantools.database.conversion import (
    BaseConversion,
    IdentityConversion,
    LinearIntegerConversion,
)
from cantools.database.errors import DecodeError, EncodeError
from cantools.database.namedsignalvalue import NamedSignalValue

from bms.errors import ConfigError

__all__ = ["BitLayout", "MessageCodec"]

Number: TypeAlias = int | float
SignalValue: TypeAlias = int | float | str

_IDENTITY, _INT, _LINEAR = 0, 1, 2
_FLOAT_FORMATS = {16: "e", 32: "f", 64: "d"}
_FLOAT_MAX = {16: 65504.0, 32: float(np.finfo(np.float32).max), 64: float(np.finfo(np.float64).max)}
_EXACT_BITS = 52  # raw values below 2**52 survive float64 arithmetic exactly
_I64 = 1 << 63


@dataclass(slots=True, eq=False)
class _Sig:
    """One signal, as the codec needs it: where its bits are and how they scale."""

    name: str
    index: int
    message: str
    big: bool  # Motorola
    shift: int  # LSB position in the frame read as one int (its own byte order)
    shift8: int  # the same in an 8-byte frame padded at the end (batch paths)
    length: int
    mask: int
    signed: bool
    sign_bit: int  # 1 << (length - 1) when signed, else 0
    kind: int  # _IDENTITY, _INT or _LINEAR, as cantools' conversion factory picks
    is_float: bool
    fmt: str | None  # struct format of an IEEE float signal
    scale: Number
    offset: Number
    lo: Number  # raw bit range
    hi: Number
    initial_raw: Number
    nan_raw: Number
    choices: dict[int, str]
    inverse: dict[str, int]
    minimum: Number | None
    maximum: Number | None
    mux_ids: frozenset[int] | None  # None: on every page
    fits: bool  # the layout fits the frame and the fast paths can express it
    other_shift: int | None  # within one byte: its shift in the other byte order's int

    # -- conversions, cantools-exact -------------------------------------------------

    def unrounded(self, value: Any) -> Any:
        """Physical -> raw before rounding, exactly as cantools computes it."""
        if self.kind == _IDENTITY:
            return value
        if self.kind == _INT:
            x = value - self.offset
            q, m = divmod(x, self.scale)
            return q if m == 0 else x / self.scale
        return (value - self.offset) / self.scale

    def clamp(self, x: Any) -> tuple[Number, bool]:
        """An unrounded raw value -> (raw in the bit range, whether it was clamped)."""
        if self.is_float:
            f = float(x)
            if f != f:
                return self.nan_raw, True
            if f > self.hi:
                return self.hi, True
            if f < self.lo:
                return self.lo, True
            return f, False
        if x != x:
            return self.nan_raw, True
        try:
            r = round(x)
        except OverflowError:  # +-inf
            return (self.hi if x > 0 else self.lo), True
        if r > self.hi:
            return self.hi, True
        if r < self.lo:
            return self.lo, True
        return r, False

    def choice_raw(self, label: str) -> int:
        try:
            return self.inverse[str(label)]
        except KeyError:
            valid = ", ".join(self.inverse) if self.inverse else "none, no value table"
            raise KeyError(
                f"{label!r} is not a value of signal {self.name} in message {self.message}"
                f" (valid: {valid})"
            ) from None

    def to_raw(self, value: Any, scaled: bool) -> tuple[Number, bool]:
        """Any accepted value (number, choice name, NamedSignalValue) -> (raw, clamped)."""
        if isinstance(value, str):
            return self.clamp(self.choice_raw(value))
        if isinstance(value, NamedSignalValue):
            return self.clamp(value.value)
        try:
            return self.clamp(self.unrounded(value) if scaled else value)
        except TypeError:
            raise TypeError(
                f"signal {self.name} in message {self.message}: cannot encode"
                f" {type(value).__name__} {value!r}"
            ) from None

    def phys(self, raw: Any) -> Any:
        """Raw -> physical, as cantools' ``raw_to_scaled(raw, decode_choices=False)``."""
        if self.kind == _IDENTITY:
            return raw
        return raw * self.scale + self.offset

    def bits(self, raw: Number) -> int:
        """A raw value (already in range) -> its unsigned bit pattern."""
        if self.is_float:
            assert self.fmt is not None
            return int.from_bytes(struct.pack(">" + self.fmt, raw), "big")
        return int(raw) & self.mask

    def from_bits(self, bits: int) -> Number:
        """An unsigned bit pattern -> the raw value (sign-extended, or a float)."""
        if self.is_float:
            assert self.fmt is not None
            value: float = struct.unpack(">" + self.fmt, bits.to_bytes(self.length // 8, "big"))[0]
            return value
        return (bits ^ self.sign_bit) - self.sign_bit

    def layout_key(self) -> tuple[Any, ...]:
        return (
            self.big,
            self.shift,
            self.length,
            self.signed,
            self.kind,
            self.is_float,
            type(self.scale),
            self.scale,
            type(self.offset),
            self.offset,
        )


def _build_sig(sig: Signal, index: int, message: Message) -> _Sig:
    n_bits = 8 * message.length
    big = sig.byte_order == "big_endian"
    length = sig.length
    byte, bit = divmod(sig.start, 8)
    if big:
        msb = 8 * byte + 7 - bit  # network bit number of the MSB
        shift = n_bits - msb - length
        shift8 = shift + 8 * (8 - message.length)
        low = bit - length + 1  # LSB within the byte, if the signal stays in it
        other = 8 * byte + low if low >= 0 else None
    else:
        shift = shift8 = sig.start
        other = 8 * (message.length - 1 - byte) + bit if bit + length <= 8 else None
    conv = sig.conversion
    if conv.scale == 0:
        raise ConfigError(
            f"message {message.name}: signal {sig.name} has scale 0; give it a non-zero factor"
        )
    # the conversion cantools itself uses for numbers (choices aside)
    plain = BaseConversion.factory(
        scale=conv.scale, offset=conv.offset, choices=None, is_float=conv.is_float
    )
    kind = _LINEAR
    scale: Number = plain.scale
    offset: Number = plain.offset
    if isinstance(plain, IdentityConversion):
        kind, scale, offset = _IDENTITY, 1, 0
    elif isinstance(plain, LinearIntegerConversion):
        kind = _INT
    fmt = _FLOAT_FORMATS.get(length) if conv.is_float else None
    fits = 0 < length and shift >= 0 and shift + length <= n_bits
    lo: Number
    hi: Number
    if conv.is_float:
        fits = fits and fmt is not None
        hi = _FLOAT_MAX.get(length, math.inf)
        lo = -hi
    elif sig.is_signed:
        lo, hi = -(1 << (length - 1)), (1 << (length - 1)) - 1
    else:
        lo, hi = 0, (1 << length) - 1
    choices = {int(k): str(v) for k, v in (conv.choices or {}).items()}
    proto = _Sig(
        name=sig.name,
        index=index,
        message=message.name,
        big=big,
        shift=shift,
        shift8=shift8,
        length=length,
        mask=(1 << length) - 1,
        signed=bool(sig.is_signed),
        sign_bit=(1 << (length - 1)) if sig.is_signed and not conv.is_float else 0,
        kind=kind,
        is_float=bool(conv.is_float),
        fmt=fmt,
        scale=scale,
        offset=offset,
        lo=lo,
        hi=hi,
        initial_raw=0,
        nan_raw=0,
        choices=choices,
        inverse={v: k for k, v in choices.items()},
        minimum=sig.minimum,
        maximum=sig.maximum,
        mux_ids=(
            frozenset(sig.multiplexer_ids or ()) if sig.multiplexer_signal is not None else None
        ),
        fits=fits,
        other_shift=None,
    )
    zero: Number = 0.0 if conv.is_float else 0
    initial = zero if sig.raw_initial is None else proto.clamp(sig.raw_initial)[0]
    nan_raw = zero
    if sig.minimum is not None:
        nan_raw = proto.clamp(proto.unrounded(sig.minimum))[0]
    proto.initial_raw, proto.nan_raw, proto.other_shift = initial, nan_raw, other
    return proto


# (signal names, encode(*values) -> (frame, raw0, raw1, ...), phys(that result) -> values)
RawEncoder = tuple[
    tuple[str, ...], Callable[..., tuple[Any, ...]], Callable[[Any], tuple[Any, ...]]
]


class BitLayout(NamedTuple):
    """Where an integer signal's bits sit in a frame of at most 8 bytes read as one 64-bit
    word, and how its raw value scales: for kernels that pack frames themselves. The word
    is the frame padded with zeros to 8 bytes, read little-endian (``big`` False) or
    big-endian (``big`` True); the signal's LSB is at bit ``shift`` of it."""

    big: bool
    shift: int
    length: int
    signed: bool
    scale: float
    offset: float
    raw_lo: int  # the raw bit range
    raw_hi: int
    nan_raw: int  # what NaN encodes as (the DBC minimum, else 0)
    initial_raw: int  # what a signal without a value encodes as


# -- code generation ---------------------------------------------------------------
#
# For each page layout the codec compiles a *factory*: a function that takes the
# page's signal names, indices, initial bit patterns and the codec's helper methods
# and returns the encoder (or decoder) as a closure. Pages that differ only in their
# signal names (pages of cell voltages) share one factory, and so do messages with
# the same layout, so a DBC compiles each distinct layout once.


_HELPERS = "_sat, _choice, _fbits, _fphys, _fraw, _extra, _badlen, _badmux"
_FACTORIES: dict[tuple[Any, ...], Callable[..., Any]] = {}


class _Source:
    """Python source of one factory and the constants it uses."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, Any] = {"_from": int.from_bytes}

    def const(self, value: Any) -> str:
        if type(value) is int:
            return f"({value})" if value < 0 else str(value)
        if type(value) is float and math.isfinite(value):
            return f"({value!r})"
        name = f"_k{len(self.ns)}"
        self.ns[name] = value
        return name

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def head(self, params: str, sigs: Sequence[_Sig], inits: bool = False) -> None:
        self.add(f"def make({params}):", f"    {_HELPERS} = helpers")
        if sigs:
            rng = range(len(sigs))
            self.add(f"    ({''.join(f'n{j}, ' for j in rng)}) = names")
            self.add(f"    ({''.join(f'i{j}, ' for j in rng)}) = idx")
            if inits:
                self.add(f"    ({''.join(f'z{j}, ' for j in rng)}) = inits")

    def build(self) -> Callable[..., Any]:
        exec(compile("\n".join(self.lines), "<bms.canbus.codec>", "exec"), self.ns)
        factory: Callable[..., Any] = self.ns["make"]
        return factory


def _sig_key(s: _Sig) -> tuple[Any, ...]:
    return (*s.layout_key(), bool(s.choices))


def _factory(
    what: str,
    sigs: Sequence[_Sig],
    n: int,
    orders: tuple[bool, bool] = (False, False),
    raw_in: tuple[bool, ...] = (),
) -> Callable[..., Any]:
    """The (cached) factory of `what` ("enc", "encraw", "page", "pageraw", "top",
    "topraw", "mux") for these signals in an n-byte frame. `orders` (mux only): whether
    the pages read the frame as a little-endian and as a big-endian int. `raw_in`
    ("encposraws" only): the signals whose argument is already their raw value."""
    key = (what, n, orders, raw_in, *map(_sig_key, sigs))
    factory = _FACTORIES.get(key)
    if factory is None:
        src = _Source()
        if what.startswith("enc"):
            _emit_encode(
                src,
                sigs,
                scaled=what != "encraw",
                n=n,
                positional=what.startswith("encpos"),
                with_raws=what == "encposraws",
                raw_in=raw_in,
            )
        elif what == "rawphys":
            _emit_raw_phys(src, sigs)
        elif what == "mux":
            _emit_mux(src, sigs[0], n, orders)
        else:
            _emit_decode(
                src,
                sigs,
                scaled=not what.endswith("raw"),
                top=what.startswith("top"),
                n=n,
                as_tuple=what == "toptuple",
            )
        factory = _FACTORIES[key] = src.build()
    return factory


def _emit_encode(
    src: _Source,
    sigs: Sequence[_Sig],
    scaled: bool,
    n: int,
    positional: bool = False,
    with_raws: bool = False,
    raw_in: tuple[bool, ...] = (),
) -> None:
    """``with_raws``: the encoder returns ``(frame, raw0, raw1, ...)``, each signal's raw
    value as the frame carries it (an int in its bit range; the bit pattern of an IEEE
    float); its ``inits`` are then raw values too. ``raw_in[j]`` (positional): argument
    ``j`` is an int in the signal's raw range already, taken as it is."""
    src.head("names, idx, inits, helpers", sigs, inits=True)
    if positional:  # encode(v0, v1, ...): one argument per signal, None for none
        src.add(f"    def encode({', '.join(f'a{j}' for j in range(len(sigs)))}):")
    else:
        src.add("    def encode(values):", "        g = values.get", "        k = 0")
    for j, s in enumerate(sigs):
        if j < len(raw_in) and raw_in[j]:
            src.add(f"        r{j} = a{j} if a{j} is not None else z{j}")
            continue
        if positional:
            src.add(f"        v = a{j}", "        if v is not None:")
        else:
            src.add(f"        v = g(n{j})", "        if v is not None:", "            k += 1")
        ind = "            "
        if s.choices or s.is_float:
            choice = f"_fbits(i{j}, _choice(i{j}, v))" if s.is_float else f"_choice(i{j}, v)"
            src.add(f"{ind}if v.__class__ is str:", f"{ind}    r{j} = {choice}", f"{ind}else:")
            ind += "    "
        x = "v"
        if scaled and s.kind != _IDENTITY:
            x = "x"
            sub = f"v - {src.const(s.offset)}" if s.offset != 0 else "v"
            sc = src.const(s.scale)
            if s.kind == _LINEAR:
                src.add(f"{ind}x = ({sub}) / {sc}" if s.scale != 1 else f"{ind}x = {sub}")
            else:
                src.add(f"{ind}x = {sub}")
                if s.scale != 1:
                    src.add(f"{ind}q, m = divmod(x, {sc})", f"{ind}x = q if m == 0 else x / {sc}")
        if s.is_float:
            src.add(f"{ind}r{j} = _fbits(i{j}, {x})")
        else:  # in range, or clamped into it by _sat: only negatives need the mask
            lo, hi = src.const(s.lo), src.const(s.hi)
            if x == "x" and s.kind == _LINEAR and s.length <= _EXACT_BITS:
                lo, hi = src.const(float(s.lo)), src.const(float(s.hi))  # float vs float
            src.add(f"{ind}r{j} = {x}.__round__() if {lo} <= {x} <= {hi} else _sat(i{j}, {x})")
        src.add("        else:", f"            r{j} = z{j}")
    if not positional:
        src.add("        if k != len(values):", "            _extra(values)")

    def packed(big: bool) -> str:
        terms = []
        for j, s in enumerate(sigs):
            if s.big == big:
                term = f"(r{j} & {s.mask})" if s.signed and not s.is_float else f"r{j}"
                terms.append(f"{term} << {s.shift}" if s.shift else term)
        return " | ".join(terms)

    little, big = packed(False), packed(True)
    raws = "".join(f", r{j}" for j in range(len(sigs))) if with_raws else ""
    if little and big:
        src.add(
            f"        al = {little}",
            f"        ab = {big}",
            f"        return (_from(al.to_bytes({n}, 'little'), 'big') | ab).to_bytes({n}, 'big')"
            + raws,
        )
    elif big:
        src.add(f"        return ({big}).to_bytes({n}, 'big'){raws}")
    elif little:
        src.add(f"        return ({little}).to_bytes({n}, 'little'){raws}")
    else:
        src.add(f"        return bytes({n}){raws}")
    src.add("    return encode")


def _emit_raw_phys(src: _Source, sigs: Sequence[_Sig]) -> None:
    """``phys(encoded)``: the physical values of the signals from the result of the
    ``with_raws`` encoder, exactly as the decoder computes them from the frame's bits."""
    src.head("names, idx, helpers", sigs)
    src.add("    def phys(encoded):")
    src.add(f"        (_{''.join(f', r{j}' for j in range(len(sigs)))}) = encoded")
    src.add("        return (")
    for j, s in enumerate(sigs):
        if s.is_float:
            expr = f"_fphys(i{j}, r{j})"
        elif s.kind == _IDENTITY:
            expr = f"r{j}"
        else:
            expr = f"r{j} * {src.const(s.scale)} + {src.const(s.offset)}"
        src.add(f"            {expr},")
    src.add("        )", "    return phys")


def _decode_expr(src: _Source, s: _Sig, j: int, scaled: bool) -> str:
    raw = "ib" if s.big else "il"
    if s.shift:
        raw = f"({raw} >> {s.shift})"
    raw = f"({raw} & {s.mask})"
    if s.is_float:
        return f"_fphys(i{j}, {raw})" if scaled else f"_fraw(i{j}, {raw})"
    if s.signed:
        raw = f"(({raw} ^ {s.sign_bit}) - {s.sign_bit})"
    if not scaled or s.kind == _IDENTITY:
        return raw
    return f"{raw} * {src.const(s.scale)} + {src.const(s.offset)}"


def _emit_frame_ints(src: _Source, little: bool, big: bool, n: int) -> None:
    src.add(f"        if len(data) != {n}:", "            _badlen(data)")
    src.add("        il = _from(data, 'little')" if little else "        il = 0")
    src.add("        ib = _from(data, 'big')" if big else "        ib = 0")


def _emit_decode(
    src: _Source, sigs: Sequence[_Sig], scaled: bool, top: bool, n: int, as_tuple: bool = False
) -> None:
    src.head("names, idx, helpers", sigs)
    if top:
        src.add("    def decode(data):")
        _emit_frame_ints(src, any(not s.big for s in sigs), any(s.big for s in sigs), n)
    else:
        src.add("    def decode(il, ib):")
    if as_tuple:  # the values in signal order
        src.add("        return (")
        src.add(*(f"            {_decode_expr(src, s, j, scaled)}," for j, s in enumerate(sigs)))
        src.add("        )", "    return decode")
        return
    src.add("        return {")
    src.add(*(f"            n{j}: {_decode_expr(src, s, j, scaled)}," for j, s in enumerate(sigs)))
    src.add("        }", "    return decode")


def _emit_mux(src: _Source, mux: _Sig, n: int, orders: tuple[bool, bool]) -> None:
    """The decoder of a multiplexed message: read the multiplexer, call the page."""
    src.add("def make(pages, idx, helpers):", f"    {_HELPERS} = helpers", "    (i0,) = idx")
    src.add("    def decode(data):")
    _emit_frame_ints(src, orders[0] or not mux.big, orders[1] or mux.big, n)
    expr = _decode_expr(src, mux, 0, scaled=True)
    if mux.kind == _LINEAR or mux.is_float:
        expr = f"int({expr})"
    src.add(
        f"        m = {expr}",
        "        f = pages.get(m)",
        "        if f is None:",
        "            _badmux(m)",
        "        return f(il, ib)",
        "    return decode",
    )


def _signal_tree_names(tree: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for node in tree:
        if isinstance(node, str):
            names.append(node)
        else:
            for mux, pages in node.items():
                names.append(mux)
                for sub in pages.values():
                    names.extend(_signal_tree_names(sub))
    return names


# -- batch plan --------------------------------------------------------------------


@dataclass(eq=False)
class _Slot:
    """Signals at the same bits with the same scaling, on disjoint pages."""

    members: list[_Sig]
    always: bool  # an unmultiplexed signal or the multiplexer: on every row
    stack: bool = False  # goes through the vectorized float64 lane
    row: int = -1  # its row in the stacked arrays
    member_of_page: npt.NDArray[np.intp] | None = None  # page index -> member or -1
    names: tuple[str, ...] = ()
    pages: set[int] = dataclasses.field(default_factory=set)  # the members' mux ids


def _stackable(s: _Sig) -> bool:
    if s.is_float or s.length > _EXACT_BITS:
        return False
    bound = max(abs(s.lo), abs(s.hi))
    if s.kind == _INT:
        return bound * abs(s.scale) + abs(s.offset) < _I64
    if s.kind == _LINEAR:
        if not (math.isfinite(s.scale) and math.isfinite(s.offset)):
            return False
        if type(s.scale) is int and bound * abs(s.scale) >= 1 << 53:
            return False
        if type(s.offset) is int and abs(s.offset) >= 1 << 53:
            return False
    return True


def _batch_dtype(s: _Sig) -> np.dtype[Any]:
    """The dtype of a full decode_batch column: int64 where cantools returns ints."""
    if s.is_float or s.kind == _LINEAR:
        return np.dtype(np.float64)
    ends = (s.lo * s.scale + s.offset, s.hi * s.scale + s.offset)
    if min(ends) >= -_I64 and max(ends) < _I64:
        return np.dtype(np.int64)
    if min(ends) >= 0 and max(ends) < 1 << 64:
        return np.dtype(np.uint64)
    return np.dtype(np.float64)


class _Batch:
    """Arrays precomputed for the vectorized paths of a message of at most 8 bytes.

    Every stackable slot is one row of a (k, n) float64 matrix on encode and of a
    (k, n) uint64 matrix on decode; the multiplexed slots among them are gathered and
    scattered all at once through ``mux_table`` (slot x page -> member number).
    """

    def __init__(self, sigs: Sequence[_Sig], page_ids: Sequence[int], mux: _Sig | None):
        self.page_ids = np.array(page_ids, dtype=np.int64)
        self.dense = list(page_ids) == list(range(len(page_ids)))  # pages 0, 1, ... P-1
        # page index by the multiplexer's raw bits, for the usual small unscaled multiplexer
        self.mux_lut: npt.NDArray[np.intp] | None = None
        if (
            mux is not None
            and mux.kind == _IDENTITY
            and not (mux.signed or mux.is_float)
            and mux.length <= 16
        ):
            lut = np.full(1 << mux.length, -1, np.intp)
            for k, pid in enumerate(page_ids):
                if 0 <= pid < len(lut):
                    lut[pid] = k
            self.mux_lut = lut
        self.need_little = any(not s.big for s in sigs)
        self.need_big = any(s.big for s in sigs)
        page_index = {p: k for k, p in enumerate(page_ids)}
        slots: list[_Slot] = []
        by_key: dict[tuple[Any, ...], list[_Slot]] = {}
        for s in sigs:
            if s.mux_ids is None:
                slots.append(_Slot(members=[s], always=True))
                continue
            for slot in by_key.setdefault(s.layout_key(), []):
                if slot.pages.isdisjoint(s.mux_ids):
                    break
            else:
                slot = _Slot(members=[], always=False)
                by_key[s.layout_key()].append(slot)
                slots.append(slot)
            slot.members.append(s)
            slot.pages.update(s.mux_ids)
        for slot in slots:
            slot.names = tuple(m.name for m in slot.members)
            if not slot.always:
                table = np.full(len(page_ids), -1, dtype=np.intp)
                for j, m in enumerate(slot.members):
                    assert m.mux_ids is not None
                    for pid in m.mux_ids:
                        table[page_index[pid]] = j
                slot.member_of_page = table
            slot.stack = all(_stackable(m) for m in slot.members)
        self.slots = slots
        self.stack = [sl for sl in slots if sl.stack]
        self.other = [sl for sl in slots if not sl.stack]
        for row, sl in enumerate(self.stack):
            sl.row = row
        first = [sl.members[0] for sl in self.stack]
        col = (len(first), 1)

        def arr(values: list[Any], dtype: Any) -> npt.NDArray[Any]:
            return np.array(values, dtype=dtype).reshape(col)

        self.k = len(first)
        self.off = arr([float(s.offset) for s in first], np.float64)
        self.scale = arr([float(s.scale) for s in first], np.float64)
        self.any_off = bool(np.any(self.off != 0))
        self.any_scale = bool(np.any(self.scale != 1))
        self.lo = arr([float(s.lo) for s in first], np.float64)
        self.hi = arr([float(s.hi) for s in first], np.float64)
        self.nan_raw = arr([float(s.nan_raw) for s in first], np.float64)
        self.mask = arr([s.mask for s in first], np.uint64)
        self.shift = arr([s.shift8 for s in first], np.uint64)
        self.sign = arr([s.sign_bit for s in first], np.uint64)
        self.any_signed = bool(np.any(self.sign != 0))
        self.is_be = arr([s.big for s in first], bool)
        self.n_be = int(self.is_be.sum())
        self.le_rows = np.flatnonzero(~self.is_be[:, 0])
        self.be_rows = np.flatnonzero(self.is_be[:, 0])
        int_rows = [r for r, s in enumerate(first) if s.kind != _LINEAR]
        flt_rows = [r for r, s in enumerate(first) if s.kind == _LINEAR]
        self.int_rows = np.array(int_rows, np.intp)
        self.flt_rows = np.array(flt_rows, np.intp)
        self.int_scale = np.array([first[r].scale for r in int_rows], np.int64).reshape(-1, 1)
        self.int_off = np.array([first[r].offset for r in int_rows], np.int64).reshape(-1, 1)
        self.int_plain = bool(np.all(self.int_scale == 1) and np.all(self.int_off == 0))
        self.flt_scale = np.array([float(first[r].scale) for r in flt_rows]).reshape(-1, 1)
        self.flt_off = np.array([float(first[r].offset) for r in flt_rows]).reshape(-1, 1)
        # where each stacked row lands in the decoded int / float matrices
        pos = {r: j for j, r in enumerate(int_rows)} | {r: j for j, r in enumerate(flt_rows)}
        self.always = [
            (sl.row, sl.names[0], sl.members[0].kind != _LINEAR, pos[sl.row])
            for sl in self.stack
            if sl.always
        ]
        # the multiplexed stackable slots, as one block
        self.mux_slots = [sl for sl in self.stack if not sl.always]
        self.mux_rows = np.array([sl.row for sl in self.mux_slots], np.intp)
        self.mux_names = tuple(nm for sl in self.mux_slots for nm in sl.names)
        base = np.cumsum([0] + [len(sl.members) for sl in self.mux_slots])[:-1]
        local = np.array([sl.member_of_page for sl in self.mux_slots], np.intp).reshape(
            len(self.mux_slots), len(page_ids)
        )
        self.mux_table = np.where(local >= 0, local + base.reshape(-1, 1), -1)
        self.mux_full = bool(np.all(self.mux_table >= 0))  # every page has every slot
        is_int = [sl.members[0].kind != _LINEAR for sl in self.mux_slots]
        self.mux_int_sel = np.array([j for j, i in enumerate(is_int) if i], np.intp)
        self.mux_flt_sel = np.array([j for j, i in enumerate(is_int) if not i], np.intp)
        self.mux_int_pos = np.array(
            [pos[sl.row] for sl, i in zip(self.mux_slots, is_int, strict=True) if i], np.intp
        )
        self.mux_flt_pos = np.array(
            [pos[sl.row] for sl, i in zip(self.mux_slots, is_int, strict=True) if not i], np.intp
        )
        self.init_raw = {s.name: s.initial_raw for sl in slots for s in sl.members}
        self.any_big = self.n_be > 0 or any(sl.members[0].big for sl in self.other)
        self.other_names = [name for sl in self.other for name in sl.names]


_MISSING: Any = object()


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) or np.ndim(value) == 0


def _gather_block(
    names: tuple[str, ...], columns: Mapping[str, Any], member: npt.NDArray[np.intp], n: int
) -> npt.NDArray[np.float64] | None:
    """Each row's value of every multiplexed slot, when every member has a column and
    the columns are all scalars or all length-n arrays; None otherwise. ``member`` is
    (slots, n), -1 where a row's page lacks the slot (those rows get any value)."""
    try:  # the usual case: one number per signal
        table = np.fromiter(map(columns.__getitem__, names), np.float64, len(names))
    except KeyError:
        return None
    except (ValueError, TypeError):
        try:
            table = np.array([columns[nm] for nm in names], dtype=np.float64)
        except (ValueError, TypeError):
            return None
    if table.ndim == 1:
        return table[member]
    if table.shape == (len(names), n):
        return table[member, np.arange(n)]
    return None


class MessageCodec:
    """Encoder/decoder of one CAN message, compiled from its cantools ``Message``.

    ``encode``/``decode`` work on physical values, ``encode_raw``/``decode_raw`` on raw
    integers (floats for IEEE float signals); the ``*_batch`` methods on numpy columns.
    """

    def __init__(self, message: Message):
        if message.is_container:
            raise ConfigError(f"message {message.name}: container messages are not supported")
        self.message = message
        self.name: str = message.name
        self.frame_id: int = message.frame_id
        self.is_extended: bool = bool(message.is_extended_frame)
        self.length: int = message.length
        self.signal_names: tuple[str, ...] = tuple(s.name for s in message.signals)
        self.saturated = 0
        self._name_set = frozenset(self.signal_names)
        self._sigs = [_build_sig(s, i, message) for i, s in enumerate(message.signals)]
        self._by_name = {s.name: s for s in self._sigs}

        tree = message.signal_tree
        roots = [node for node in tree if isinstance(node, dict)]
        self.multiplexer: str | None = None
        self._page_tree: dict[int, Any] = {}
        if roots:  # the (first) multiplexer at the top of the tree, and its pages
            self.multiplexer = next(iter(roots[0]))
            self._page_tree = dict(roots[0][self.multiplexer])
        self.mux_values: tuple[int, ...] = tuple(sorted(self._page_tree))
        self._page_names: dict[int, tuple[str, ...]] = {}
        always = {s.name for s in message.signals if s.multiplexer_signal is None}
        for page in self.mux_values:
            keep = always | set(_signal_tree_names(self._page_tree[page]))
            self._page_names[page] = tuple(n for n in self.signal_names if n in keep)

        muxes = [s for s in message.signals if s.is_multiplexer]
        simple = len(roots) <= 1 and all(
            s.multiplexer_signal in (None, self.multiplexer) for s in message.signals
        )
        if self.multiplexer is not None:
            mux_sig = message.get_signal_by_name(self.multiplexer)
            simple = simple and len(muxes) == 1 and mux_sig.multiplexer_signal is None
        self._mux: _Sig | None = self._by_name[self.multiplexer] if self.multiplexer else None
        self._compiled = simple and all(s.fits for s in self._sigs)

        self._enc: Callable[[Mapping[str, Any]], bytes]
        self._enc_raw: Callable[[Mapping[str, Any]], bytes]
        self._dec: Callable[[Any], dict[str, Any]]
        self._dec_raw: Callable[[Any], dict[str, Any]]
        self._enc_pages: dict[int, Callable[[Mapping[str, Any]], bytes]] | None = None
        self._enc_raw_pages: dict[int, Callable[[Mapping[str, Any]], bytes]] | None = None
        self._groups: dict[int | None, list[_Sig]] = {}  # page (None: no mux) -> signals
        self.decode_tuple: Callable[[Any], tuple[Any, ...]] | None = None  # tuple_decoder()
        self._make: Callable[..., Any] | None = None
        if self._compiled:
            self._compile()
        else:
            self._enc = lambda values: self._encode_cantools(values, scaled=True)
            self._enc_raw = lambda values: self._encode_cantools(values, scaled=False)
            self._dec = lambda data: self._decode_cantools(data, scaled=True)
            self._dec_raw = lambda data: self._decode_cantools(data, scaled=False)
        self._batch = (
            _Batch(self._sigs, self.mux_values, self._mux)
            if self._compiled and self.length <= 8 and self._mux_ids_fit()
            else None
        )

    # -- construction ------------------------------------------------------------------

    def _mux_ids_fit(self) -> bool:
        return all(-_I64 <= p < _I64 for p in self.mux_values)

    def _compile(self) -> None:
        n = self.length
        # a signal inside one byte reads the same from either int: with one byte order
        # left, the frame converts to and from one int only
        spread = {s.big for s in self._sigs if s.other_shift is None}
        sigs = list(self._sigs)
        if len(spread) <= 1:
            big = spread.pop() if spread else False
            sigs = [
                dataclasses.replace(s, big=big, shift=s.other_shift)
                if s.big != big and s.other_shift is not None
                else s
                for s in sigs
            ]
        helpers = (
            self._sat,
            self._choice,
            self._fbits,
            self._fphys,
            self._fraw,
            self._extra,
            self._badlen,
            self._badmux,
        )

        def make(what: str, group: Sequence[_Sig], raw_in: tuple[bool, ...] = ()) -> Any:
            names = tuple(s.name for s in group)
            idx = tuple(s.index for s in group)
            if what == "encposraws":  # raw values (the packing masks a signed one)
                inits = tuple(s.bits(s.initial_raw) if s.is_float else s.initial_raw for s in group)
                return _factory(what, group, n, raw_in=raw_in)(names, idx, inits, helpers)
            if what.startswith("enc"):
                inits = tuple(s.bits(s.initial_raw) for s in group)
                return _factory(what, group, n)(names, idx, inits, helpers)
            return _factory(what, group, n)(names, idx, helpers)

        self._make = make
        if self._mux is None:
            self._groups = {None: sigs}
            self._enc = make("enc", sigs)
            self._enc_raw = make("encraw", sigs)
            self._dec = make("top", sigs)
            self._dec_raw = make("topraw", sigs)
            return
        mux = sigs[self._mux.index]
        pages: dict[int, list[_Sig]] = {}
        for page in self.mux_values:
            on_page = set(self._page_names[page])
            pages[page] = [s for s in sigs if s.name in on_page]
        for p, group in pages.items():
            self._groups[p] = group
        self._enc_pages = {p: make("enc", group) for p, group in pages.items()}
        self._enc_raw_pages = {p: make("encraw", group) for p, group in pages.items()}
        orders = (any(not s.big for s in sigs), any(s.big for s in sigs))
        dispatch = _factory("mux", [mux], n, orders)
        decoders = {p: make("page", group) for p, group in pages.items()}
        self._dec = dispatch(decoders, (mux.index,), helpers)
        raw_decoders = {p: make("pageraw", group) for p, group in pages.items()}
        self._dec_raw = dispatch(raw_decoders, (mux.index,), helpers)

    # -- helpers the generated code calls (cold paths) ---------------------------------

    def _sat(self, index: int, x: Any) -> int:
        raw, clamped = self._sigs[index].clamp(x)
        if clamped:
            self.saturated += 1
        return int(raw)

    def _choice(self, index: int, label: str) -> int:
        s = self._sigs[index]
        raw, clamped = s.clamp(s.choice_raw(label))
        if clamped:
            self.saturated += 1
        return int(raw)

    def _fbits(self, index: int, x: Any) -> int:
        s = self._sigs[index]
        raw, clamped = s.clamp(x)
        if clamped:
            self.saturated += 1
        return s.bits(raw)

    def _fphys(self, index: int, bits: int) -> Any:
        s = self._sigs[index]
        return s.phys(s.from_bits(bits))

    def _fraw(self, index: int, bits: int) -> Number:
        return self._sigs[index].from_bits(bits)

    def _badlen(self, data: Any) -> None:
        raise ValueError(f"message {self.name}: {len(data)} data bytes, the DBC says {self.length}")

    def _badmux(self, value: Any) -> None:
        ids = self.mux_values
        valid = (
            ", ".join(map(str, ids)) if len(ids) <= 8 else f"{len(ids)} from {ids[0]} to {ids[-1]}"
        )
        raise ValueError(
            f"message {self.name}: unknown multiplexer value {value} for {self.multiplexer}"
            f" (valid: {valid})"
        )

    def _extra(self, values: Mapping[str, Any]) -> None:
        """Raise KeyError if a key is not a signal of the message (keys of other pages,
        or keys whose value is None, are fine)."""
        if not values.keys() <= self._name_set:
            raise self._unknown(values)

    def _unknown(self, keys: Any) -> KeyError:
        bad = [k for k in keys if k not in self._name_set]
        return KeyError(f"signal {bad[0]!r} is not in message {self.name}")

    def _spec(self, name: str) -> _Sig:
        try:
            return self._by_name[name]
        except KeyError:
            raise self._unknown([name]) from None

    def _mux_page(self, value: Any, scaled: bool) -> int:
        """The page a multiplexer value (physical, or raw) selects."""
        if type(value) is int and scaled:
            return value
        mux = self._mux
        assert mux is not None
        if isinstance(value, str):
            return mux.choice_raw(value)
        if isinstance(value, NamedSignalValue):
            return int(value.value)
        try:
            return int(value if scaled else mux.phys(value))
        except (TypeError, ValueError, OverflowError):
            self._badmux(value)
            raise  # pragma: no cover - _badmux raises

    def _page_fn(
        self, values: Mapping[str, Any], pages: dict[int, Callable[[Mapping[str, Any]], bytes]]
    ) -> Callable[[Mapping[str, Any]], bytes]:
        try:
            value = values[str(self.multiplexer)]
        except KeyError:
            raise KeyError(
                f"message {self.name}: the multiplexer {self.multiplexer} needs a value"
            ) from None
        page = self._mux_page(value, scaled=pages is self._enc_pages)
        fn = pages.get(page)
        if fn is None:
            self._badmux(page)
        assert fn is not None
        return fn

    # -- scalar API --------------------------------------------------------------------

    def encode(self, values: Mapping[str, SignalValue]) -> bytes:
        """Physical values (numbers or choice names) -> frame bytes.

        A signal without a value takes its DBC initial value (raw 0 without one).
        """
        pages = self._enc_pages
        fn = self._enc if pages is None else self._page_fn(values, pages)
        before = self.saturated
        try:
            return fn(values)
        except (TypeError, AttributeError):  # an odd value type: the checked path explains
            self.saturated = before
            return self._encode_loop(values, scaled=True)
        except KeyError:  # an unknown signal or choice name: this frame counts nothing
            self.saturated = before
            raise

    def encode_raw(self, raw: Mapping[str, SignalValue]) -> bytes:
        """Raw values -> frame bytes (clamped to the bit range, never wrapped)."""
        pages = self._enc_raw_pages
        fn = self._enc_raw if pages is None else self._page_fn(raw, pages)
        before = self.saturated
        try:
            return fn(raw)
        except (TypeError, AttributeError):
            self.saturated = before
            return self._encode_loop(raw, scaled=False)
        except KeyError:
            self.saturated = before
            raise

    def decode(self, data: bytes | bytearray) -> dict[str, Any]:
        """Frame bytes -> physical values (numbers; no choice names)."""
        return self._dec(data)

    def decode_raw(self, data: bytes | bytearray) -> dict[str, Any]:
        """Frame bytes -> raw values."""
        return self._dec_raw(data)

    def to_raw(self, name: str, value: SignalValue) -> Number:
        """Physical value (or choice name) -> raw, saturated to the bit range (not counted).

        An int, or a float for an IEEE float signal.
        """
        return self._spec(name).to_raw(value, scaled=True)[0]

    def to_phys(self, name: str, raw: Number) -> Any:
        """Raw -> physical value, as cantools decodes it."""
        return self._spec(name).phys(raw)

    def positional_encoder(
        self, mux_value: int | None = None
    ) -> tuple[tuple[str, ...], Callable[..., bytes]] | None:
        """For a sender that knows at start-up which signals it fills: the signals of the
        message (of page ``mux_value`` of a multiplexed one) and an encoder that takes
        their physical values as positional arguments in that order (None: the signal's
        initial value), as :meth:`encode` encodes them but without building a dict.
        None when the message has no compiled layout (use :meth:`encode`)."""
        made = self._page_maker(mux_value)
        if made is None:
            return None
        group, make = made
        return tuple(s.name for s in group), make("encpos", group)

    def raw_encoder(
        self, mux_value: int | None = None, raw_in: Collection[str] = ()
    ) -> RawEncoder | None:
        """:meth:`positional_encoder` for a sender that hands the frame to a receiver in
        the same process: the signals, an encoder that returns ``(frame, raw0, raw1,
        ...)`` (the raw value of each signal as the frame carries it), and ``phys(result)``,
        the signals' physical values from that result, equal to what :meth:`decode` gives
        for the frame (the same arithmetic on the same raw values, without reading the
        bits back). None when the message has no compiled layout.

        ``raw_in``: signals whose argument the caller gives as their raw value, an int
        within :meth:`int_range` (a flag's 0 or 1, a value table's raw, an alive counter);
        the encoder takes it without conversion or check."""
        made = self._page_maker(mux_value)
        if made is None:
            return None
        group, make = made
        flags = tuple(s.name in raw_in for s in group)
        enc = make("encposraws", group, flags if any(flags) else ())
        return tuple(s.name for s in group), enc, make("rawphys", group)

    def int_range(self, name: str) -> tuple[int, int] | None:
        """The raw range of signal ``name`` when its raw value is its physical value (an
        integer signal of scale 1 and offset 0 that the compiled codec encodes); else
        None."""
        s = self._spec(name)
        if s.kind != _IDENTITY or s.is_float or not s.fits:
            return None
        return int(s.lo), int(s.hi)

    def _page_maker(self, mux_value: int | None) -> tuple[list[_Sig], Callable[..., Any]] | None:
        """The signals of a page (``mux_value``: None for a message without a multiplexer)
        and the factory of its compiled functions; None without a compiled layout."""
        if not self._compiled or (mux_value is None) != (self._mux is None):
            return None
        group = self._groups.get(mux_value)
        if group is None or self._make is None:
            return None
        return group, self._make

    def tuple_decoder(self) -> tuple[str, ...] | None:
        """For a message without multiplexing: its signals, in the order in which
        ``decode_tuple(data)`` returns their physical values (as :meth:`decode` does, without
        the dict; it is built by this call). None for a multiplexed message or one without a
        compiled layout."""
        if not self._compiled or self._mux is not None or self._make is None:
            return None
        group = self._groups[None]
        if self.decode_tuple is None:
            self.decode_tuple = self._make("toptuple", group)
        return tuple(s.name for s in group)

    def bit_layout(self, name: str) -> BitLayout | None:
        """The bit layout of signal ``name`` for frames of at most 8 bytes; None for an IEEE
        float signal, a signal of 64 bits or one whose bits do not fit the frame."""
        s = self._spec(name)
        if s.is_float or not s.fits or s.length >= 64 or self.length > 8:
            return None
        return BitLayout(
            s.big,
            s.shift8,
            s.length,
            s.signed,
            float(s.scale),
            float(s.offset),
            int(s.lo),
            int(s.hi),
            int(s.nan_raw),
            int(s.initial_raw),
        )

    def choices(self, name: str) -> dict[int, str]:
        """The value table of a signal (raw -> name); empty without one."""
        return dict(self._spec(name).choices)

    def page_signals(self, mux_value: int) -> tuple[str, ...]:
        """The signals a frame with this multiplexer value carries (all of them when the
        message is not multiplexed)."""
        if self.multiplexer is None:
            return self.signal_names
        try:
            return self._page_names[mux_value]
        except KeyError:
            self._badmux(mux_value)
            raise  # pragma: no cover - _badmux raises

    def out_of_range(self, values: Mapping[str, SignalValue]) -> list[str]:
        """Names whose physical value lies outside the DBC [minimum, maximum].

        Signals without limits (or with min == max == 0) are skipped; a value in the
        signal's value table is in range; the tolerance is cantools' (1e-6 * |scale|).
        An unknown choice name and NaN are out of range.
        """
        out = []
        for name, value in values.items():
            s = self._spec(name)
            if s.minimum is None and s.maximum is None:
                continue
            if s.minimum == 0 and s.maximum == 0:
                continue
            if isinstance(value, (str, NamedSignalValue)):
                if isinstance(value, NamedSignalValue) or str(value) in s.inverse:
                    continue
                out.append(name)
                continue
            if s.choices and math.isfinite(value):
                raw, _ = s.clamp(s.unrounded(value))
                if raw in s.choices:
                    continue
            tol = abs(s.scale) * 1e-6
            low = s.minimum is None or value >= s.minimum - tol
            high = s.maximum is None or value <= s.maximum + tol
            if not (low and high):
                out.append(name)
        return out

    # -- general paths -----------------------------------------------------------------

    def _encode_loop(self, values: Mapping[str, Any], scaled: bool) -> bytes:
        """The plain, checked encoder: one signal after the other."""
        self._extra(values)
        if not self._compiled:
            return self._encode_cantools(values, scaled)
        names: Sequence[str] = self.signal_names
        if self._mux is not None:
            pages = self._enc_pages if scaled else self._enc_raw_pages
            assert pages is not None
            self._page_fn(values, pages)  # validates the multiplexer value
            names = self._page_names[self._mux_page(values[self._mux.name], scaled)]
        little = big = 0
        for name in names:
            s = self._by_name[name]
            value = values.get(name)
            if value is None:
                raw: Number = s.initial_raw
            else:
                raw, clamped = s.to_raw(value, scaled)
                self.saturated += clamped
            if s.big:
                big |= s.bits(raw) << s.shift
            else:
                little |= s.bits(raw) << s.shift
        n = self.length
        return (int.from_bytes(little.to_bytes(n, "little"), "big") | big).to_bytes(n, "big")

    def _encode_cantools(self, values: Mapping[str, Any], scaled: bool) -> bytes:
        self._extra(values)
        raw: dict[str, Number] = {}
        for s in self._sigs:
            value = values.get(s.name)
            if value is None:
                raw[s.name] = s.initial_raw
            else:
                raw[s.name], clamped = s.to_raw(value, scaled)
                self.saturated += clamped
        try:
            return bytes(self.message.encode(raw, scaling=False, strict=False))
        except EncodeError as exc:
            raise ValueError(f"message {self.name}: {exc}") from None

    def _decode_cantools(self, data: Any, scaled: bool) -> dict[str, Any]:
        if len(data) != self.length:
            self._badlen(data)
        try:
            out = self.message.decode(bytes(data), decode_choices=False, scaling=scaled)
        except DecodeError as exc:
            raise ValueError(f"message {self.name}: {exc}") from None
        assert isinstance(out, dict)
        return dict(out)

    # -- batch API ---------------------------------------------------------------------

    def encode_batch(self, columns: Mapping[str, Any]) -> npt.NDArray[np.uint8]:
        """Physical columns (1-D arrays of length n, or scalars) -> (n, length) uint8 frames.

        For a multiplexed message the multiplexer column is required and picks each
        row's page; a signal's value is used on the rows whose page holds it.
        """
        n = self._rows(columns)
        if self._batch is None:
            self._extra(columns)
            return self._encode_rows(columns, n)
        b = self._batch
        page_idx = self._page_index(columns, n) if self._mux is not None else None
        little = np.zeros(n, np.uint64)
        big = np.zeros(n, np.uint64)
        if b.k:
            x, given, fill, found = self._gather_stack(b, columns, n, page_idx)
        else:
            x, given, fill, found = None, None, None, 0
        if b.other_names:
            found += sum(name in columns for name in b.other_names)
        if found != len(columns):  # a key that is no signal (or a None value)
            self._extra(columns)
        if x is not None:
            self._pack_stack(b, x, given, fill, little, big)
        for slot in b.other:
            self._encode_other(slot, columns, n, page_idx, little, big)
        frames = little.astype("<u8").view(np.uint8).reshape(n, 8)
        if b.any_big:
            frames = frames | big.astype(">u8").view(np.uint8).reshape(n, 8)
        if self.length < 8:
            return np.ascontiguousarray(frames[:, : self.length])
        return frames

    def decode_batch(self, data: npt.ArrayLike) -> dict[str, npt.NDArray[Any]]:
        """(n, length) uint8 frames -> physical columns, one per signal (not in message
        order): int64 where cantools decodes ints, float64 otherwise.

        For a multiplexed message, a signal not on a row's page is NaN in that row
        (float64 column); the multiplexer and unmultiplexed signals are full columns.
        An unknown multiplexer value in any row raises ValueError.
        """
        frames = np.asarray(data)
        if frames.ndim != 2 or frames.shape[1] != self.length or frames.dtype != np.uint8:
            raise ValueError(
                f"message {self.name}: decode_batch needs an (n, {self.length}) uint8 array,"
                f" got {frames.dtype} {frames.shape}"
            )
        n = frames.shape[0]
        if self._batch is None:
            return self._decode_rows(frames)
        b = self._batch
        if self.length == 8:
            buf = np.ascontiguousarray(frames)
        else:
            buf = np.zeros((n, 8), np.uint8)
            buf[:, : self.length] = frames
        zero = np.zeros(n, np.uint64)
        little = buf.view("<u8").reshape(n).astype(np.uint64) if b.need_little else zero
        big = buf.view(">u8").reshape(n).astype(np.uint64) if b.need_big else zero
        page_idx = None
        if self._mux is not None:
            page_idx = self._batch_pages(little, big)
        out: dict[str, npt.NDArray[Any]] = {}
        if b.k:
            self._decode_stack(b, little, big, n, page_idx, out)
        for slot in b.other:
            self._decode_other(slot, little, big, n, page_idx, out)
        return out

    # -- batch internals -----------------------------------------------------------------

    def _rows(self, columns: Mapping[str, Any]) -> int:
        if self.multiplexer is not None and self.multiplexer not in columns:
            raise KeyError(
                f"message {self.name}: encode_batch needs the multiplexer column {self.multiplexer}"
            )
        mux = self.multiplexer
        if mux is not None:
            col = columns[mux]
            if isinstance(col, np.ndarray) and col.ndim == 1:  # the usual case
                return len(col)
        for name in (*((mux,) if mux is not None else ()), *columns):
            col = columns[name]
            if not _is_scalar(col):
                if np.ndim(col) != 1:
                    raise ValueError(
                        f"message {self.name}: column {name} must be 1-D, got shape {np.shape(col)}"
                    )
                return len(col)
        raise ValueError(f"message {self.name}: encode_batch needs at least one 1-D column")

    def _page_index(self, columns: Mapping[str, Any], n: int) -> npt.NDArray[np.intp]:
        mux = self._mux
        assert mux is not None
        col = np.asarray(columns[mux.name])
        if col.shape != (n,):
            col = np.broadcast_to(col, (n,))
        if col.dtype.kind in "iub":
            numbers = col.astype(np.int64, copy=False)
        elif col.dtype.kind == "f":
            bad = ~(np.abs(col) < 2.0**63)  # NaN, inf and the like: no page
            if bad.any():
                self._badmux(col[bad][0])
            numbers = np.trunc(col).astype(np.int64)
        else:
            raise ValueError(
                f"message {self.name}: the multiplexer column {mux.name} must be numeric"
            )
        return self._page_index_of(numbers)

    def _page_index_of(self, numbers: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        assert self._batch is not None
        ids = self._batch.page_ids
        if self._batch.dense:  # negative numbers wrap to huge ones
            if len(numbers) and numbers.astype(np.uint64).max() >= len(ids):
                bad = (numbers < 0) | (numbers >= len(ids))
                self._badmux(int(numbers[bad][0]))
            return numbers.astype(np.intp, copy=False)
        idx = np.searchsorted(ids, numbers)
        found = idx < len(ids)
        found[found] = ids[idx[found]] == numbers[found]
        if not found.all():
            self._badmux(int(numbers[~found][0]))
        return idx

    def _batch_pages(
        self, little: npt.NDArray[np.uint64], big: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.intp]:
        """The page index of every decoded frame."""
        mux = self._mux
        assert mux is not None and self._batch is not None
        bits = ((big if mux.big else little) >> np.uint64(mux.shift8)) & np.uint64(mux.mask)
        lut = self._batch.mux_lut
        if lut is not None:
            idx = lut[bits.astype(np.intp)]
            if np.any(idx < 0):
                self._badmux(int(bits[idx < 0][0]))
            return idx
        values = [int(mux.phys(mux.from_bits(int(u)))) for u in bits.tolist()]
        return self._page_index_of(np.array(values, dtype=np.int64))

    def _gather_stack(
        self,
        b: _Batch,
        columns: Mapping[str, Any],
        n: int,
        page_idx: npt.NDArray[np.intp] | None,
    ) -> tuple[npt.NDArray[np.float64], Any, Any, int]:
        """The stacked lane's (k, n) physical values, the mask of rows that have one
        (None: all), the raw values of the rows without one, and how many of the
        lane's signals have a column."""
        x = np.empty((b.k, n), np.float64)
        given: npt.NDArray[np.bool_] | None = None
        fill: npt.NDArray[np.float64] | None = None
        found = 0
        for row, name, _, _ in b.always:
            value = columns.get(name)
            if value is None:
                if given is None or fill is None:
                    given, fill = np.ones((b.k, n), bool), np.zeros((b.k, n))
                given[row] = False
                fill[row] = b.init_raw[name]
                continue
            found += 1
            try:
                x[row] = value
            except (ValueError, TypeError):
                raise ValueError(
                    f"message {self.name}: column {name} must be a number or {n} numbers"
                ) from None
        if not b.mux_slots:
            return x, given, fill, found
        assert page_idx is not None
        member = b.mux_table[:, page_idx]
        gathered = None
        if len(columns) - found >= len(b.mux_names):  # maybe every page signal has a column
            gathered = _gather_block(b.mux_names, columns, member, n)
        if gathered is not None:
            found += len(b.mux_names)
            x[b.mux_rows] = gathered
            if not b.mux_full:
                active = member >= 0
                if np.count_nonzero(active) != active.size:
                    if given is None or fill is None:
                        given, fill = np.ones((b.k, n), bool), np.zeros((b.k, n))
                    given[b.mux_rows] = active
            return x, given, fill, found
        if given is None or fill is None:
            given, fill = np.ones((b.k, n), bool), np.zeros((b.k, n))
        for slot in b.mux_slots:
            assert slot.member_of_page is not None
            j = slot.row
            found += sum(name in columns for name in slot.names)
            x[j], given[j], fill[j] = self._gather_rows(
                slot, columns, slot.member_of_page[page_idx], n
            )
        return x, given, fill, found

    def _pack_stack(
        self,
        b: _Batch,
        x: npt.NDArray[np.float64],
        given: npt.NDArray[np.bool_] | None,
        fill: npt.NDArray[np.float64] | None,
        little: npt.NDArray[np.uint64],
        big: npt.NDArray[np.uint64],
    ) -> None:
        """Physical -> raw (clamped, counted) -> bits, ORed into the frames."""
        with np.errstate(over="ignore"):  # a huge value overflows to inf, then clamps
            if b.any_off:
                x -= b.off
            if b.any_scale:
                x /= b.scale
        np.rint(x, out=x)
        raw = np.clip(x, b.lo, b.hi)
        bad = raw != x  # clamped, or NaN
        if given is not None:
            bad &= given
        n_bad = np.count_nonzero(bad)
        if n_bad:
            self.saturated += int(n_bad)
            raw = np.where(np.isnan(raw), b.nan_raw, raw)
        if given is not None and fill is not None:
            raw = np.where(given, raw, fill)
        bits = raw.astype(np.int64).view(np.uint64)
        if b.any_signed:  # negative raw values: two's complement within the length
            bits &= b.mask
        bits <<= b.shift
        if b.n_be == 0:
            little |= np.bitwise_or.reduce(bits, axis=0)
        elif b.n_be == b.k:
            big |= np.bitwise_or.reduce(bits, axis=0)
        else:
            little |= np.bitwise_or.reduce(bits[b.le_rows], axis=0)
            big |= np.bitwise_or.reduce(bits[b.be_rows], axis=0)

    def _gather_rows(
        self,
        slot: _Slot,
        columns: Mapping[str, Any],
        member: npt.NDArray[np.intp],
        n: int,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
        """Each row's value of a multiplexed slot, row by row: (values, given, fill raw)."""
        values = self._row_values(slot, columns, member, n)
        x = np.zeros(n)
        given = np.zeros(n, bool)
        fill = np.zeros(n)
        for r, (m, value) in enumerate(zip(member.tolist(), values, strict=True)):
            if m < 0:
                continue
            if value is _MISSING:
                fill[r] = slot.members[m].initial_raw
            else:
                x[r] = value
                given[r] = True
        return x, given, fill

    def _row_values(
        self, slot: _Slot, columns: Mapping[str, Any], member: npt.NDArray[np.intp], n: int
    ) -> list[Any]:
        """The value of each row (or _MISSING) of a multiplexed slot, as Python objects."""
        entries: list[Any] = []
        for nm in slot.names:
            value = columns.get(nm, _MISSING)
            if value is not _MISSING and not _is_scalar(value):
                if np.shape(value) != (n,):
                    raise ValueError(
                        f"message {self.name}: column {nm} must be a number or {n} numbers"
                    )
                value = np.asarray(value).tolist()
            entries.append(value)
        out: list[Any] = []
        for r, m in enumerate(member.tolist()):
            value = entries[m] if m >= 0 else _MISSING
            out.append(value[r] if isinstance(value, list) else value)
        return out

    def _encode_other(
        self,
        slot: _Slot,
        columns: Mapping[str, Any],
        n: int,
        page_idx: npt.NDArray[np.intp] | None,
        little: npt.NDArray[np.uint64],
        big: npt.NDArray[np.uint64],
    ) -> None:
        """Float and wide signals: exact, element by element."""
        if slot.always:
            member = np.zeros(n, np.intp)
        else:
            assert page_idx is not None and slot.member_of_page is not None
            member = slot.member_of_page[page_idx]
        values = self._row_values(slot, columns, member, n)
        bits = []
        for m, value in zip(member.tolist(), values, strict=True):
            if m < 0:
                bits.append(0)
                continue
            s = slot.members[m]
            if value is _MISSING:
                bits.append(s.bits(s.initial_raw))
                continue
            raw, clamped = s.to_raw(value, scaled=True)
            self.saturated += clamped
            bits.append(s.bits(raw))
        first = slot.members[0]
        shifted = np.array(bits, dtype=np.uint64) << np.uint64(first.shift8)
        if first.big:
            big |= shifted
        else:
            little |= shifted

    def _decode_stack(
        self,
        b: _Batch,
        little: npt.NDArray[np.uint64],
        big: npt.NDArray[np.uint64],
        n: int,
        page_idx: npt.NDArray[np.intp] | None,
        out: dict[str, npt.NDArray[Any]],
    ) -> None:
        if b.n_be == 0:
            src = little
        elif b.n_be == b.k:
            src = big
        else:
            src = np.where(b.is_be, big, little)
        bits = (src >> b.shift) & b.mask
        if b.any_signed:
            bits = (bits ^ b.sign) - b.sign
        raw = bits.view(np.int64)
        ints = flts = raw
        if b.int_rows.size:
            ints = raw[b.int_rows]
            if not b.int_plain:
                ints = ints * b.int_scale + b.int_off
        if b.flt_rows.size:
            flts = raw[b.flt_rows].astype(np.float64) * b.flt_scale + b.flt_off
        for _, name, is_int, pos in b.always:
            out[name] = (ints if is_int else flts)[pos]
        if not b.mux_slots:
            return
        assert page_idx is not None
        phys = np.empty((len(b.mux_slots), n))
        if b.mux_int_sel.size:
            phys[b.mux_int_sel] = ints[b.mux_int_pos]
        if b.mux_flt_sel.size:
            phys[b.mux_flt_sel] = flts[b.mux_flt_pos]
        member = b.mux_table[:, page_idx]
        table = np.full((len(b.mux_names), n), np.nan)
        if b.mux_full:
            table[member, np.arange(n)] = phys
        else:
            active = member >= 0
            rows = np.broadcast_to(np.arange(n), member.shape)
            table[member[active], rows[active]] = phys[active]
        out.update(zip(b.mux_names, table, strict=True))

    def _scatter(
        self,
        slot: _Slot,
        row: npt.NDArray[np.float64],
        page_idx: npt.NDArray[np.intp],
        n: int,
        out: dict[str, npt.NDArray[Any]],
    ) -> None:
        """One NaN-padded column per member of a multiplexed slot."""
        assert slot.member_of_page is not None
        member = slot.member_of_page[page_idx]
        table = np.full((len(slot.members), n), np.nan)
        active = member >= 0
        if active.all():
            table[member, np.arange(n)] = row
        else:
            rows = np.flatnonzero(active)
            table[member[rows], rows] = row[rows]
        out.update(zip(slot.names, table, strict=True))

    def _decode_other(
        self,
        slot: _Slot,
        little: npt.NDArray[np.uint64],
        big: npt.NDArray[np.uint64],
        n: int,
        page_idx: npt.NDArray[np.intp] | None,
        out: dict[str, npt.NDArray[Any]],
    ) -> None:
        first = slot.members[0]
        bits = ((big if first.big else little) >> np.uint64(first.shift8)) & np.uint64(first.mask)
        values = [first.phys(first.from_bits(u)) for u in bits.tolist()]
        if slot.always:
            out[first.name] = np.array(values, dtype=_batch_dtype(first))
            return
        assert page_idx is not None
        self._scatter(slot, np.array(values, dtype=np.float64), page_idx, n, out)

    def _encode_rows(self, columns: Mapping[str, Any], n: int) -> npt.NDArray[np.uint8]:
        """Frames longer than 8 bytes or layouts cantools handles: one row at a time."""
        cols = {k: (v if _is_scalar(v) else np.asarray(v).tolist()) for k, v in columns.items()}
        out = np.empty((n, self.length), np.uint8)
        for r in range(n):
            row = {k: (v[r] if isinstance(v, list) else v) for k, v in cols.items()}
            if self._mux is not None:
                keep = self.page_signals(self._mux_page(row[self._mux.name], True))
                row = {k: v for k, v in row.items() if k in keep}
            out[r] = np.frombuffer(self.encode(row), np.uint8)
        return out

    def _decode_rows(self, frames: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[Any]]:
        rows = [self.decode(bytes(f)) for f in frames]
        out: dict[str, npt.NDArray[Any]] = {}
        for name in self.signal_names:
            values = [row.get(name) for row in rows]
            s = self._by_name[name]
            if all(v is not None for v in values) and _batch_dtype(s) != np.float64:
                out[name] = np.array(values, dtype=_batch_dtype(s))
            else:
                out[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        return out
