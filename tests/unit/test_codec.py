"""MessageCodec against cantools: fixed DBCs, random layouts, saturation, multiplexing,
batches. cantools is the reference for every bit and every physical value."""

from __future__ import annotations

import math
from typing import Any

import cantools
import numpy as np
import pytest
from cantools.database.can import Message

from bms.canbus.codec import MessageCodec

HEADER = 'VERSION ""\n\nBU_: BMS VCU\n\n'

FIXED = """
BO_ 291 BMS_Mixed: 8 BMS
 SG_ U1 : 0|1@1+ (1,0) [0|0] "" VCU
 SG_ S3 : 1|3@1- (1,0) [0|0] "" VCU
 SG_ U7 : 4|7@1+ (0.5,-10) [0|0] "" VCU
 SG_ S13 : 11|13@1- (0.1,0) [0|0] "V" VCU
 SG_ B16 : 31|16@0+ (2,100) [0|0] "" VCU
 SG_ BS16 : 47|16@0- (0.01,-5.5) [0|0] "A" VCU

BO_ 292 BMS_Wide: 8 BMS
 SG_ L31 : 0|31@1- (3,-7) [0|0] "" VCU
 SG_ B31 : 39|31@0+ (0.25,0) [0|0] "" VCU

BO_ 293 BMS_U64: 8 BMS
 SG_ All : 0|64@1+ (1,0) [0|0] "" VCU

BO_ 294 BMS_S64BE: 8 BMS
 SG_ AllBE : 7|64@0- (1,0) [0|0] "" VCU

BO_ 295 BMS_Short: 3 BMS
 SG_ Soc : 0|8@1+ (0.5,0) [0|100] "%" VCU
 SG_ State : 8|4@1+ (1,0) [0|15] "" VCU
 SG_ Temp : 23|8@0- (1,-40) [-40|125] "degC" VCU

BO_ 2147484000 BMS_Extended: 8 BMS
 SG_ F32 : 0|32@1- (1,0) [0|0] "" VCU
 SG_ G32 : 39|32@0- (2,1) [0|0] "" VCU

BO_ 1000 BMS_Cells: 8 BMS
 SG_ Mux M : 0|8@1+ (1,0) [0|2] "" VCU
 SG_ Cell1_V m0 : 8|16@1+ (0.001,0) [0|65.535] "V" VCU
 SG_ Cell2_V m0 : 24|16@1+ (0.001,0) [0|65.535] "V" VCU
 SG_ Cell3_V m1 : 8|16@1+ (0.001,0) [0|65.535] "V" VCU
 SG_ Cell4_V m1 : 24|16@1+ (0.001,0) [0|65.535] "V" VCU
 SG_ Temp_degC m2 : 15|8@0- (1,0) [-40|125] "degC" VCU
 SG_ Counter : 60|4@1+ (1,0) [0|15] "" VCU

BO_ 1001 BMS_OddPages: 8 BMS
 SG_ Sel M : 0|8@1+ (0.5,0) [0|0] "" VCU
 SG_ Wide m7 : 8|56@1+ (1,0) [0|0] "" VCU
 SG_ Raw53 m100 : 15|53@0- (3,0) [0|0] "" VCU
 SG_ Fl m3 : 32|32@1- (1,0) [0|0] "" VCU
 SG_ Small m3 : 8|12@1+ (0.1,0) [0|0] "" VCU

BO_ 1002 BMS_BigCells: 8 BMS
 SG_ Mux M : 7|8@0+ (1,0) [0|0] "" VCU
 SG_ CellA_V m0 : 15|16@0+ (0.001,0) [0|0] "V" VCU
 SG_ CellB_V m0 : 31|16@0+ (0.001,0) [0|0] "V" VCU
 SG_ CellC_V m1 : 15|16@0+ (0.001,0) [0|0] "V" VCU
 SG_ CellD_V m1 : 31|16@0+ (0.001,0) [0|0] "V" VCU
 SG_ Tail m1 : 47|8@0- (1,0) [0|0] "" VCU

BO_ 300 BMS_Init: 8 BMS
 SG_ Counter : 0|4@1+ (1,0) [0|15] "" VCU
 SG_ Temp : 8|8@1+ (1,-40) [-40|125] "degC" VCU
 SG_ Limit : 16|8@1+ (0.5,10) [10|100] "A" VCU

BO_ 400 BMS_Fd: 64 BMS
 SG_ X : 0|16@1+ (0.1,0) [0|0] "" VCU
 SG_ Y : 500|12@1- (1,0) [0|0] "" VCU
 SG_ Z : 263|24@0+ (1,0) [0|0] "" VCU

BO_ 100 BMS_ExtMux: 8 BMS
 SG_ Mux1 M : 0|8@1+ (1,0) [0|0] "" VCU
 SG_ Mux2 m0M : 8|8@1+ (1,0) [0|0] "" VCU
 SG_ A m1 : 16|8@1+ (1,0) [0|0] "" VCU
 SG_ B m2 : 16|16@1+ (0.5,0) [0|0] "" VCU
 SG_ C m1 : 8|8@1- (1,0) [0|0] "" VCU

BA_DEF_ SG_ "GenSigStartValue" INT 0 100000;
BA_DEF_DEF_ "GenSigStartValue" 0;
BA_ "GenSigStartValue" SG_ 300 Temp 65;
BA_ "GenSigStartValue" SG_ 300 Counter 3;
VAL_ 295 State 0 "Off" 1 "Precharge" 2 "Charging" 3 "Fault";
VAL_ 1000 Mux 0 "Cells12" 1 "Cells34" 2 "Temps";
SIG_VALTYPE_ 2147484000 F32 : 1;
SIG_VALTYPE_ 2147484000 G32 : 1;
SIG_VALTYPE_ 1001 Fl : 1;
SG_MUL_VAL_ 100 Mux2 Mux1 0-0;
SG_MUL_VAL_ 100 A Mux2 1-1;
SG_MUL_VAL_ 100 B Mux2 2-2;
SG_MUL_VAL_ 100 C Mux1 1-1;
"""


@pytest.fixture(scope="module")
def fixed() -> cantools.database.can.Database:
    return cantools.database.load_string(HEADER + FIXED)


def codec_of(db: Any, name: str) -> tuple[Message, MessageCodec]:
    msg = db.get_message_by_name(name)
    return msg, MessageCodec(msg)


def same(ours: Any, theirs: Any) -> bool:
    """Equal, and an int where cantools returns an int."""
    if isinstance(theirs, int) and not isinstance(theirs, bool):
        return isinstance(ours, int) and ours == theirs
    return ours == theirs


def assert_same_dict(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert set(ours) == set(theirs)
    for k, v in theirs.items():
        assert same(ours[k], v), (k, ours[k], v)


def raw_range(sig: Any) -> tuple[int, int]:
    if sig.is_signed:
        return -(1 << (sig.length - 1)), (1 << (sig.length - 1)) - 1
    return 0, (1 << sig.length) - 1


def random_raw(rng: np.random.Generator, sig: Any, margin: int = 0) -> int:
    lo, hi = raw_range(sig)
    if sig.conversion.scale != int(sig.conversion.scale) or not isinstance(
        sig.conversion.offset, int
    ):
        lo, hi = max(lo, -(1 << 50)), min(hi, 1 << 50)  # keep float scaling exact
    lo, hi = lo + margin, hi - margin
    if hi <= lo:
        return lo
    if rng.random() < 0.15:
        return (lo, hi)[int(rng.integers(0, 2))]
    return lo + int(rng.integers(0, 1 << 62)) % (hi - lo + 1)


def random_phys(rng: np.random.Generator, sig: Any) -> Any:
    """A physical value cantools encodes without complaint (in range)."""
    if sig.is_float:
        return float(np.float32(rng.normal(0, 1e3)))
    raw = random_raw(rng, sig, margin=1 if sig.length > 2 else 0)
    value = sig.conversion.raw_to_scaled(raw, decode_choices=False)
    if rng.random() < 0.3 and 2 < sig.length <= 50:  # off the grid: exercises the rounding
        value += float(rng.uniform(-0.49, 0.49)) * sig.conversion.scale
    return value


def random_frame(rng: np.random.Generator, n: int) -> bytes:
    return bytes(rng.integers(0, 256, n, dtype=np.uint8))


# -- fixed layouts -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["BMS_Mixed", "BMS_Wide", "BMS_U64", "BMS_S64BE", "BMS_Short", "BMS_Extended", "BMS_Fd"],
)
def test_fixed_layouts_encode_and_decode_like_cantools(fixed, name: str, rng) -> None:
    msg, codec = codec_of(fixed, name)
    for _ in range(200):
        data = random_frame(rng, msg.length)
        if name == "BMS_Extended":  # keep the floats finite
            data = MessageCodec(msg).encode({s.name: random_phys(rng, s) for s in msg.signals})
        theirs = msg.decode(data, decode_choices=False)
        assert_same_dict(codec.decode(data), theirs)
        assert_same_dict(
            codec.decode_raw(data), msg.decode(data, decode_choices=False, scaling=False)
        )
        values = {s.name: random_phys(rng, s) for s in msg.signals}
        assert codec.encode(values) == msg.encode(values, strict=False)
        again = codec.encode(theirs)
        assert again == msg.encode(theirs, strict=False)
        assert_same_dict(codec.decode(again), theirs)
        raw = msg.decode(data, decode_choices=False, scaling=False)
        assert codec.encode_raw(raw) == msg.encode(raw, scaling=False, strict=False)
    assert codec.saturated == 0


@pytest.mark.parametrize("name", ["BMS_Mixed", "BMS_Wide", "BMS_Short", "BMS_Extended"])
def test_positional_encoder_and_tuple_decoder_equal_cantools(fixed, name: str, rng) -> None:
    msg, codec = codec_of(fixed, name)
    enc = codec.positional_encoder()
    order = codec.tuple_decoder()
    assert enc is not None and order is not None and codec.decode_tuple is not None
    names, encode = enc
    assert names == order == codec.signal_names
    for _ in range(100):
        values = {s.name: random_phys(rng, s) for s in msg.signals}
        frame = encode(*(values[n] for n in names))
        assert frame == msg.encode(values, strict=False)
        del values[names[0]]  # a signal without a value: its initial value, as encode() does
        assert encode(None, *(values[n] for n in names[1:])) == codec.encode(values)
        decoded = dict(zip(names, codec.decode_tuple(frame), strict=True))
        assert_same_dict(decoded, msg.decode(frame, decode_choices=False))


def _same_values(got: tuple[Any, ...], want: tuple[Any, ...]) -> None:
    """Equal value for value, of the same type (an int stays an int), NaN equal to NaN."""
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert type(a) is type(b), (a, b)
        assert a == b or (a != a and b != b), (a, b)


@pytest.mark.parametrize("name", ["BMS_Mixed", "BMS_Wide", "BMS_Short", "BMS_Extended"])
def test_the_raw_encoder_gives_the_frame_and_what_decoding_it_gives(fixed, name: str, rng) -> None:
    msg, codec = codec_of(fixed, name)
    made = codec.raw_encoder()
    pos = codec.positional_encoder()
    assert made is not None and pos is not None and codec.tuple_decoder() is not None
    names, encode, phys = made
    assert names == pos[0]
    wild = [None, math.nan, math.inf, -math.inf, 1e30, -1e30, True, 0, -1]
    for k in range(300):
        values = [random_phys(rng, msg.get_signal_by_name(n)) for n in names]
        if k % 3 == 0:  # no value, out of range, not a number: saturated or initial
            values[int(rng.integers(0, len(values)))] = wild[k // 3 % len(wild)]
        before = codec.saturated
        result = encode(*values)
        clamped = codec.saturated - before
        assert len(result) == 1 + len(names)
        assert result[0] == pos[1](*values)
        assert codec.saturated - before == 2 * clamped  # the frame saturates alike
        assert codec.decode_tuple is not None
        _same_values(phys(result), codec.decode_tuple(result[0]))


@pytest.mark.parametrize("name", ["BMS_Mixed", "BMS_Wide", "BMS_Short", "BMS_Init"])
def test_raw_values_given_as_such_make_the_same_frame(fixed, name: str, rng) -> None:
    """``raw_in``: an integer signal of scale 1 and offset 0 (``int_range``) given as its
    raw value makes the frame and the raw values of the same value given as a number,
    and a missing one its initial value, as before."""
    msg, codec = codec_of(fixed, name)
    made = codec.raw_encoder()
    assert made is not None
    names = made[0]
    ranges = {n: codec.int_range(n) for n in names}
    raw_in = {n for n, r in ranges.items() if r is not None}
    assert raw_in or name not in ("BMS_Mixed", "BMS_Init")  # U1 and S3; Counter (start 3)
    _, encode, _ = made
    _, encode_raw, _ = codec.raw_encoder(None, raw_in)  # type: ignore[misc]
    for k in range(200):
        values: list[Any] = []
        for n in names:
            r = ranges[n]
            if r is not None:
                values.append(int(rng.integers(r[0], r[1] + 1)))
            else:
                values.append(random_phys(rng, msg.get_signal_by_name(n)))
        if k % 10 == 0:
            values[int(rng.integers(0, len(values)))] = None
        assert encode_raw(*values) == encode(*values)
    for n, r in ranges.items():
        sig = msg.get_signal_by_name(n)
        plain = sig.scale == 1 and sig.offset == 0 and not sig.is_float
        assert (r is not None) == plain, n
        if r is not None:
            assert r == (
                (-(2 ** (sig.length - 1)), 2 ** (sig.length - 1) - 1)
                if sig.is_signed
                else (0, 2**sig.length - 1)
            )


def test_the_raw_encoder_of_a_multiplexed_page_decodes_like_its_frame(fixed, rng) -> None:
    msg, codec = codec_of(fixed, "BMS_OddPages")
    assert codec.raw_encoder() is None  # a page must be named
    for page in codec.mux_values:
        made = codec.raw_encoder(page)
        assert made is not None
        names, encode, phys = made
        for _ in range(50):
            values = {n: random_phys(rng, msg.get_signal_by_name(n)) for n in names}
            values[str(codec.multiplexer)] = page
            result = encode(*(values[n] for n in names))
            decoded = codec.decode(result[0])
            _same_values(phys(result), tuple(decoded[n] for n in names))


def test_positional_encoder_of_a_multiplexed_page_equals_cantools(fixed, rng) -> None:
    msg, codec = codec_of(fixed, "BMS_Cells")
    assert codec.tuple_decoder() is None  # pages decode through the multiplexer
    assert codec.positional_encoder() is None  # a page must be named
    for page in codec.mux_values:
        enc = codec.positional_encoder(page)
        assert enc is not None
        names, encode = enc
        assert set(names) == set(codec.page_signals(page))
        values = {n: random_phys(rng, msg.get_signal_by_name(n)) for n in names}
        values["Mux"] = page
        assert encode(*(values[n] for n in names)) == msg.encode(values, strict=False)


def test_identifiers_lengths_and_names_come_from_the_dbc(fixed) -> None:
    _, mixed = codec_of(fixed, "BMS_Mixed")
    assert (mixed.frame_id, mixed.is_extended, mixed.length) == (291, False, 8)
    assert mixed.signal_names == ("U1", "S3", "U7", "S13", "B16", "BS16")
    assert mixed.multiplexer is None
    _, ext = codec_of(fixed, "BMS_Extended")
    assert (ext.frame_id, ext.is_extended) == (0x160, True)
    _, short = codec_of(fixed, "BMS_Short")
    assert short.length == 3 and len(short.encode({"Soc": 50})) == 3


def test_decoded_numbers_are_ints_where_cantools_gives_ints(fixed) -> None:
    _, codec = codec_of(fixed, "BMS_Mixed")
    out = codec.decode(codec.encode({"U1": 1, "S3": -2, "U7": 3.5, "B16": 200, "BS16": 1.25}))
    assert isinstance(out["U1"], int) and isinstance(out["S3"], int)
    assert isinstance(out["B16"], int) and out["B16"] == 200
    assert isinstance(out["U7"], float) and out["U7"] == 3.5
    assert isinstance(out["S13"], float) and out["S13"] == 0.0


def test_numpy_scalars_encode_like_python_numbers(fixed, rng) -> None:
    msg, codec = codec_of(fixed, "BMS_Mixed")
    for _ in range(50):
        values = {s.name: random_phys(rng, s) for s in msg.signals}
        as_numpy = {
            k: np.float64(v) if isinstance(v, float) else np.int64(v) for k, v in values.items()
        }
        assert codec.encode(as_numpy) == msg.encode(values, strict=False)


def test_value_table_names_encode_to_their_raw_value(fixed) -> None:
    msg, codec = codec_of(fixed, "BMS_Short")
    assert codec.choices("State") == {0: "Off", 1: "Precharge", 2: "Charging", 3: "Fault"}
    assert codec.choices("Soc") == {}
    by_name = codec.encode({"Soc": 40, "State": "Charging", "Temp": 20})
    assert by_name == codec.encode({"Soc": 40, "State": 2, "Temp": 20})
    assert by_name == msg.encode({"Soc": 40, "State": "Charging", "Temp": 20}, strict=False)
    assert codec.decode(by_name)["State"] == 2  # numbers on the fast path, never labels
    assert codec.encode_raw({"State": "Fault"}) == codec.encode_raw({"State": 3})
    with pytest.raises(
        KeyError, match="'Charge' is not a value of signal State in message BMS_Short"
    ):
        codec.encode({"State": "Charge"})
    with pytest.raises(KeyError, match="not a value of signal Soc"):
        codec.encode({"Soc": "full"})
    named = msg.decode(by_name)  # cantools' NamedSignalValue objects encode too
    assert codec.encode(named) == by_name
    assert codec.saturated == 0


def test_missing_signals_take_the_dbc_initial_value(fixed) -> None:
    msg, codec = codec_of(fixed, "BMS_Init")
    frame = codec.encode({})
    assert codec.decode(frame) == {"Counter": 3, "Temp": 25, "Limit": 10.0}
    full = {"Counter": 3, "Temp": 25, "Limit": 10.0}
    assert frame == msg.encode(full, strict=False)
    assert codec.encode({"Temp": -40}) == msg.encode({**full, "Temp": -40}, strict=False)
    assert codec.encode_raw({}) == frame
    _, mixed = codec_of(fixed, "BMS_Mixed")
    assert mixed.encode({}) == bytes(8)  # no initial value: raw 0


def test_unknown_signal_names_raise_key_error_naming_signal_and_message(fixed) -> None:
    _, codec = codec_of(fixed, "BMS_Mixed")
    for call in (
        lambda: codec.encode({"U1": 1, "Nope": 2}),
        lambda: codec.encode_raw({"Nope": 2}),
        lambda: codec.encode_batch({"U1": np.ones(3), "Nope": np.ones(3)}),
        lambda: codec.to_raw("Nope", 1.0),
        lambda: codec.to_phys("Nope", 1),
        lambda: codec.choices("Nope"),
        lambda: codec.out_of_range({"Nope": 1.0}),
    ):
        with pytest.raises(KeyError, match="signal 'Nope' is not in message BMS_Mixed"):
            call()


def test_wrong_frame_length_is_a_value_error(fixed) -> None:
    _, codec = codec_of(fixed, "BMS_Mixed")
    with pytest.raises(ValueError, match="BMS_Mixed: 7 data bytes, the DBC says 8"):
        codec.decode(bytes(7))
    with pytest.raises(ValueError, match=r"\(n, 8\) uint8"):
        codec.decode_batch(np.zeros((2, 7), np.uint8))


def test_a_value_of_the_wrong_type_raises_type_error_naming_the_signal(fixed) -> None:
    _, codec = codec_of(fixed, "BMS_Mixed")
    with pytest.raises(TypeError, match="signal U7 in message BMS_Mixed: cannot encode list"):
        codec.encode({"U7": [1.0]})


def test_to_raw_and_to_phys_follow_the_dbc_scaling(fixed) -> None:
    msg, codec = codec_of(fixed, "BMS_Mixed")
    assert codec.to_raw("U7", 3.5) == 27 and codec.to_phys("U7", 27) == 3.5
    assert codec.to_raw("B16", 300) == 100 and codec.to_phys("B16", 100) == 300
    assert codec.to_raw("U7", 1e9) == 127 and codec.to_raw("U7", -1e9) == 0
    assert codec.to_raw("S13", math.nan) == 0
    assert codec.saturated == 0  # to_raw is a query: it counts nothing
    sig = msg.get_signal_by_name("BS16")
    for raw in (-32768, -1, 0, 1, 1234, 32767):
        assert codec.to_phys("BS16", raw) == sig.conversion.raw_to_scaled(raw, False)
        assert codec.to_raw("BS16", codec.to_phys("BS16", raw)) == raw


def test_out_of_range_names_values_outside_the_dbc_limits(fixed) -> None:
    _, codec = codec_of(fixed, "BMS_Short")
    assert codec.out_of_range({"Soc": 50, "State": 3, "Temp": 20}) == []
    assert codec.out_of_range({"Soc": 100.5, "Temp": -41}) == ["Soc", "Temp"]
    assert codec.out_of_range({"Soc": math.nan}) == ["Soc"]
    assert codec.out_of_range({"State": "Charging"}) == []
    assert codec.out_of_range({"State": "Charge"}) == ["State"]
    assert codec.out_of_range({"Soc": 100 + 1e-9}) == []  # cantools' tolerance
    _, mixed = codec_of(fixed, "BMS_Mixed")  # no limits in the DBC: nothing to check
    assert mixed.out_of_range({"U7": 1e9, "S13": -1e9}) == []


# -- saturation ----------------------------------------------------------------------


def test_out_of_range_values_clamp_and_count_and_never_wrap(fixed) -> None:
    _, codec = codec_of(fixed, "BMS_Mixed")
    cases = [
        ("U1", 2, 1),
        ("U1", -1, 0),
        ("S3", 4, 3),
        ("S3", -5, -4),
        ("U7", 1000.0, 127),  # (1000 + 10) / 0.5 would wrap to 2020 & 127
        ("U7", -10.3, 0),
        ("S13", 409.6, 4095),
        ("S13", -409.7, -4096),
        ("B16", 10**9, 65535),
        ("B16", 97, 0),  # raw -1.5 rounds to -2 (99 -> -0.5 rounds to 0: no clamp)
        ("BS16", 1e6, 32767),
        ("BS16", -math.inf, -32768),
        ("BS16", math.inf, 32767),
    ]
    for n, (name, value, raw) in enumerate(cases, start=1):
        out = codec.decode_raw(codec.encode({name: value}))
        assert out[name] == raw, (name, value)
        assert codec.saturated == n
    codec.encode({"U7": 53.5, "B16": 100})  # in range: no count
    assert codec.saturated == len(cases)


def test_nan_encodes_as_the_dbc_minimum_or_zero_and_counts(fixed) -> None:
    _, short = codec_of(fixed, "BMS_Short")
    out = short.decode(short.encode({"Soc": math.nan, "Temp": math.nan, "State": math.nan}))
    assert out == {"Soc": 0.0, "Temp": -40, "State": 0}
    assert short.saturated == 3
    _, init = codec_of(fixed, "BMS_Init")
    assert init.decode(init.encode({"Limit": math.nan}))["Limit"] == 10.0  # minimum 10
    assert init.saturated == 1


def test_batch_saturation_matches_the_scalar_path(fixed, rng) -> None:
    msg, codec = codec_of(fixed, "BMS_Mixed")
    _, scalar = codec_of(fixed, "BMS_Mixed")
    n = 40
    cols = {
        s.name: rng.normal(0, 3.0, n) * (1 << s.length) * s.scale + s.offset for s in msg.signals
    }
    cols["U7"][:3] = [math.nan, math.inf, -math.inf]
    frames = codec.encode_batch(cols)
    for r in range(n):
        assert bytes(frames[r]) == scalar.encode({k: float(v[r]) for k, v in cols.items()})
    assert codec.saturated == scalar.saturated > n


# -- multiplexing --------------------------------------------------------------------


def test_multiplexed_pages_match_cantools(fixed, rng) -> None:
    msg, codec = codec_of(fixed, "BMS_Cells")
    assert codec.multiplexer == "Mux" and codec.mux_values == (0, 1, 2)
    assert codec.page_signals(0) == ("Mux", "Cell1_V", "Cell2_V", "Counter")
    assert codec.page_signals(2) == ("Mux", "Temp_degC", "Counter")
    for _ in range(100):
        page = int(rng.integers(0, 3))
        values = {
            s: random_phys(rng, msg.get_signal_by_name(s))
            for s in codec.page_signals(page)
            if s != "Mux"
        }
        values["Mux"] = page
        frame = codec.encode(values)
        assert frame == msg.encode(values, strict=False)
        assert_same_dict(codec.decode(frame), msg.decode(frame, decode_choices=False))
        other = {"Cell3_V": 1.0} if page == 0 else {"Cell1_V": 1.0}
        assert codec.encode({**values, **other}) == frame  # other pages' keys are ignored
        label = codec.choices("Mux")[page]
        assert codec.encode({**values, "Mux": label}) == frame


def test_unknown_multiplexer_values_raise_value_error(fixed) -> None:
    _, codec = codec_of(fixed, "BMS_Cells")
    with pytest.raises(ValueError, match="BMS_Cells: unknown multiplexer value 7 for Mux"):
        codec.decode(bytes([7, 0, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="unknown multiplexer value 9"):
        codec.encode({"Mux": 9})
    with pytest.raises(ValueError, match="unknown multiplexer value 3"):
        codec.page_signals(3)
    with pytest.raises(ValueError, match="unknown multiplexer value 5"):
        codec.encode_batch({"Mux": np.array([0, 5]), "Counter": 1})
    with pytest.raises(ValueError, match="unknown multiplexer value 7"):
        codec.decode_batch(np.array([[0] * 8, [7] + [0] * 7], np.uint8))
    with pytest.raises(KeyError, match="the multiplexer Mux needs a value"):
        codec.encode({"Cell1_V": 3.3})
    with pytest.raises(KeyError, match="needs the multiplexer column Mux"):
        codec.encode_batch({"Cell1_V": np.ones(2)})
    bogus = {"Mux": [0], "Cell1_V": 1, "Cell2_V": 1, "Cell3_V": 1, "Cell4_V": 1, "Bogus": 1}
    with pytest.raises(KeyError, match="signal 'Bogus' is not in message BMS_Cells"):
        codec.encode_batch(bogus)


def test_nested_multiplexing_goes_through_cantools_behind_the_same_api(fixed, rng) -> None:
    msg, codec = codec_of(fixed, "BMS_ExtMux")
    assert codec.multiplexer == "Mux1"
    assert codec.page_signals(0) == ("Mux1", "Mux2", "A", "B")
    for values in (
        {"Mux1": 0, "Mux2": 1, "A": 7},
        {"Mux1": 0, "Mux2": 2, "B": 100.5},
        {"Mux1": 1, "C": -3},
    ):
        frame = codec.encode(values)
        assert frame == msg.encode(values, strict=False)
        assert codec.decode(frame) == msg.decode(frame, decode_choices=False) == values
    assert codec.decode_raw(codec.encode({"Mux1": 0, "Mux2": 2, "B": 100.5}))["B"] == 201
    codec.encode({"Mux1": 1, "C": 1000})
    assert codec.saturated == 1
    frames = codec.encode_batch({"Mux1": np.array([1, 1]), "C": np.array([-3, 4])})
    assert codec.decode_batch(frames)["C"].tolist() == [-3, 4]
    with pytest.raises(ValueError, match="BMS_ExtMux"):
        codec.decode(bytes([5, 0, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(KeyError, match="signal 'D' is not in message BMS_ExtMux"):
        codec.encode({"Mux1": 1, "D": 1})


# -- batches -------------------------------------------------------------------------


def check_batch(msg: Message, codec: MessageCodec, rows: list[dict[str, Any]]) -> None:
    """encode_batch/decode_batch of these rows equal cantools row by row."""
    names = [s.name for s in msg.signals]
    cols = {}
    for n in names:
        values = [row.get(n, math.nan) for row in rows]
        wide = any(isinstance(v, int) and abs(v) > 1 << 53 for v in values)
        cols[n] = np.array(values, dtype=object if wide else None)
    if codec.multiplexer is not None:
        cols[codec.multiplexer] = np.array([row[codec.multiplexer] for row in rows])
    frames = codec.encode_batch(cols)
    assert frames.shape == (len(rows), msg.length) and frames.dtype == np.uint8
    for r, row in enumerate(rows):
        assert bytes(frames[r]) == msg.encode(row, strict=False), row
    decoded = codec.decode_batch(frames)
    assert set(decoded) == set(names)
    for r in range(len(rows)):
        theirs = msg.decode(bytes(frames[r]), decode_choices=False)
        for n in names:
            col = decoded[n]
            if n not in theirs:
                assert math.isnan(col[r]), n
            elif col.dtype == np.float64:
                assert col[r] == float(theirs[n]), (n, col[r], theirs[n])
            else:
                assert col[r] == theirs[n], (n, col[r], theirs[n])
    assert codec.saturated == 0


@pytest.mark.parametrize(
    "name", ["BMS_Mixed", "BMS_Wide", "BMS_U64", "BMS_S64BE", "BMS_Short", "BMS_Extended", "BMS_Fd"]
)
def test_batches_equal_cantools_row_by_row(fixed, name: str, rng) -> None:
    msg, codec = codec_of(fixed, name)
    rows = [{s.name: random_phys(rng, s) for s in msg.signals} for _ in range(30)]
    check_batch(msg, codec, rows)
    assert codec.decode_batch(np.zeros((0, msg.length), np.uint8)).keys() == set(codec.signal_names)


def test_batch_columns_may_be_scalars_and_may_be_missing(fixed) -> None:
    msg, codec = codec_of(fixed, "BMS_Init")
    frames = codec.encode_batch({"Limit": np.array([20.0, 30.5, 40.0]), "Counter": 7})
    for r, limit in enumerate([20.0, 30.5, 40.0]):
        row = {"Counter": 7, "Temp": 25, "Limit": limit}  # Temp: its initial value
        assert bytes(frames[r]) == msg.encode(row, strict=False)
    out = codec.decode_batch(frames)
    assert out["Counter"].dtype == np.int64 and out["Limit"].dtype == np.float64
    with pytest.raises(ValueError, match="at least one 1-D column"):
        codec.encode_batch({"Counter": 7})
    with pytest.raises(ValueError, match="column Limit must be a number or 3 numbers"):
        codec.encode_batch({"Counter": np.arange(3), "Limit": np.arange(4.0)})


def test_multiplexed_batch_of_every_page_equals_cantools(fixed, rng) -> None:
    msg, codec = codec_of(fixed, "BMS_Cells")
    pages = rng.integers(0, 3, 60)
    rows = []
    for page in pages:
        row = {
            s: random_phys(rng, msg.get_signal_by_name(s))
            for s in codec.page_signals(int(page))
            if s != "Mux"
        }
        rows.append({**row, "Mux": int(page)})
    check_batch(msg, codec, rows)


def test_multiplexed_batch_takes_one_number_per_signal(fixed) -> None:
    msg, codec = codec_of(fixed, "BMS_Cells")
    values = {"Cell1_V": 3.301, "Cell2_V": 3.302, "Cell3_V": 3.303, "Cell4_V": 3.304}
    frames = codec.encode_batch({"Mux": np.array([0, 1, 1, 0]), **values, "Counter": 5})
    for r, page in enumerate([0, 1, 1, 0]):
        on_page = {k: v for k, v in values.items() if k in codec.page_signals(page)}
        expect = msg.encode({"Mux": page, "Counter": 5, **on_page}, strict=False)
        assert bytes(frames[r]) == expect
    out = codec.decode_batch(frames)
    np.testing.assert_allclose(out["Cell1_V"], [3.301, np.nan, np.nan, 3.301], rtol=1e-15)
    np.testing.assert_allclose(out["Cell4_V"], [np.nan, 3.304, 3.304, np.nan], rtol=1e-15)
    np.testing.assert_array_equal(out["Temp_degC"], [np.nan] * 4)
    assert out["Mux"].tolist() == [0, 1, 1, 0] and out["Counter"].tolist() == [5] * 4
    # a page signal without any value takes its initial value (0); other pages' may lack
    frames = codec.encode_batch({"Mux": np.array([2, 0]), "Cell1_V": 1.5, "Temp_degC": -7})
    assert bytes(frames[0]) == msg.encode({"Mux": 2, "Temp_degC": -7, "Counter": 0}, strict=False)
    row1 = {"Mux": 0, "Cell1_V": 1.5, "Cell2_V": 0, "Counter": 0}
    assert bytes(frames[1]) == msg.encode(row1, strict=False)


# -- random layouts ------------------------------------------------------------------

SCALINGS = [
    ("1", "0"),
    ("1", "-40"),
    ("2", "3"),
    ("10", "-1000"),
    ("-2", "5"),
    ("0.1", "0"),
    ("0.1", "-40"),
    ("0.001", "0"),
    ("0.5", "0.25"),
    ("0.0125", "-3.5"),
    ("1.5", "0"),
    ("-0.25", "0"),
    ("0.05", "-1600"),
    ("1", "0.5"),
]
LENGTHS = [1, 2, 3, 4, 7, 8, 10, 12, 13, 16, 20, 24, 31, 32, 33, 40, 48, 52, 53, 63, 64]


def motorola_bits(start: int, length: int) -> list[int]:
    """Bits (byte * 8 + bit) of a big-endian signal whose MSB is at `start`."""
    bits, pos = [], start
    for _ in range(length):
        bits.append(pos)
        pos = pos - 1 if pos % 8 else pos + 15
    return bits


def place(rng: np.random.Generator, used: set[int], n_bits: int, length: int) -> Any:
    """A free (big, start, bits) for a signal of `length` bits, or None."""
    for _ in range(40):
        big = bool(rng.random() < 0.5)
        if big:
            start = int(rng.integers(0, n_bits))
            msb = 8 * (start // 8) + 7 - start % 8
            if msb + length > n_bits:
                continue
            bits = motorola_bits(start, length)
        else:
            start = int(rng.integers(0, n_bits - length + 1))
            bits = list(range(start, start + length))
        if not used & set(bits):
            return big, start, bits
    return None


def signal_line(name: str, mux: str, big: bool, start: int, length: int, rng) -> str:
    signed = "-" if rng.random() < 0.5 and length > 1 else "+"
    scale, offset = SCALINGS[int(rng.integers(0, len(SCALINGS)))]
    order = 0 if big else 1
    return f' SG_ {name} {mux}: {start}|{length}@{order}{signed} ({scale},{offset}) [0|0] "" VCU'


def random_message(rng: np.random.Generator, frame_id: int) -> str:
    used: set[int] = set()
    lines = [f"BO_ {frame_id} R{frame_id}: 8 BMS"]
    for j in range(int(rng.integers(1, 8))):
        length = int(rng.choice(LENGTHS)) if rng.random() < 0.7 else int(rng.integers(1, 65))
        spot = place(rng, used, 64, length)
        if spot is None:
            continue
        big, start, bits = spot
        used |= set(bits)
        lines.append(signal_line(f"S{j}", "", big, start, length, rng))
    if len(lines) == 1:
        lines.append(signal_line("S0", "", False, 0, 8, rng))
    return "\n".join(lines)


def random_mux_message(rng: np.random.Generator, frame_id: int) -> str:
    used: set[int] = set()
    mux_len = int(rng.integers(3, 9))
    big, start, bits = place(rng, used, 64, mux_len)
    used |= set(bits)
    lines = [
        f"BO_ {frame_id} M{frame_id}: 8 BMS",
        f' SG_ Mux M : {start}|{mux_len}@{0 if big else 1}+ (1,0) [0|0] "" VCU',
    ]
    for j in range(int(rng.integers(0, 3))):
        spot = place(rng, used, 64, int(rng.integers(1, 17)))
        if spot is not None:
            used |= set(spot[2])
            lines.append(signal_line(f"C{j}", "", spot[0], spot[1], len(spot[2]), rng))
    ids = rng.choice(1 << mux_len, size=int(rng.integers(2, 7)), replace=False)
    same_layout = rng.random() < 0.4  # pages of cells: one layout, other names
    shared = [place(rng, used, 64, int(rng.integers(4, 17))) for _ in range(3)]
    for page in ids:
        page_used = set(used)
        spot = place(rng, page_used, 64, 1)  # every page carries at least one signal
        if spot is not None:
            page_used |= set(spot[2])
            lines.append(signal_line(f"P{page}_x", f"m{page} ", spot[0], spot[1], 1, rng))
        for j in range(int(rng.integers(1, 4))):
            length = int(rng.integers(1, 25)) if rng.random() < 0.9 else int(rng.integers(50, 57))
            spot = shared[j] if same_layout else place(rng, page_used, 64, length)
            if spot is None or page_used & set(spot[2]):
                continue
            page_used |= set(spot[2])
            lines.append(
                signal_line(f"P{page}_{j}", f"m{page} ", spot[0], spot[1], len(spot[2]), rng)
            )
    return "\n".join(lines)


def random_database(rng: np.random.Generator, n: int, maker: Any) -> Any:
    body = "\n\n".join(maker(rng, 0x100 + k) for k in range(n))
    return cantools.database.load_string(HEADER + body + "\n")


def test_random_layouts_match_cantools(rng) -> None:
    for _ in range(8):
        db = random_database(rng, 30, random_message)
        for msg in db.messages:
            codec = MessageCodec(msg)
            for _ in range(4):
                data = random_frame(rng, 8)
                theirs = msg.decode(data, decode_choices=False)
                assert_same_dict(codec.decode(data), theirs)
                assert codec.encode(theirs) == msg.encode(theirs, strict=False)
                values = {s.name: random_phys(rng, s) for s in msg.signals}
                assert codec.encode(values) == msg.encode(values, strict=False), values
            rows = [{s.name: random_phys(rng, s) for s in msg.signals} for _ in range(6)]
            check_batch(msg, codec, rows)


def test_random_multiplexed_layouts_match_cantools(rng) -> None:
    for _ in range(4):
        db = random_database(rng, 25, random_mux_message)
        for msg in db.messages:
            codec = MessageCodec(msg)
            mux = msg.get_signal_by_name("Mux")
            rows = []
            for _ in range(8):
                page = int(rng.choice(codec.mux_values))
                row = {
                    s: random_phys(rng, msg.get_signal_by_name(s))
                    for s in codec.page_signals(page)
                    if s != "Mux"
                }
                rows.append({**row, "Mux": page})
                frame = codec.encode(rows[-1])
                assert frame == msg.encode(rows[-1], strict=False)
                assert_same_dict(codec.decode(frame), msg.decode(frame, decode_choices=False))
                data = bytearray(random_frame(rng, 8))
                data = bytes(
                    a | b
                    for a, b in zip(
                        (int.from_bytes(data, "little") & ~mux_mask(mux)).to_bytes(8, "little"),
                        codec.encode_raw({"Mux": page}),
                        strict=True,
                    )
                )
                assert_same_dict(codec.decode(data), msg.decode(data, decode_choices=False))
            check_batch(msg, codec, rows)


def mux_mask(sig: Any) -> int:
    """The bits of a signal in the frame read as a little-endian int."""
    if sig.byte_order == "little_endian":
        return ((1 << sig.length) - 1) << sig.start
    return sum(1 << b for b in motorola_bits(sig.start, sig.length))


def test_float_signals_clamp_to_the_float_range_and_count(fixed) -> None:
    _, codec = codec_of(fixed, "BMS_Extended")
    out = codec.decode(codec.encode({"F32": 1e40, "G32": -1e300}))
    assert out["F32"] == float(np.finfo(np.float32).max)
    assert out["G32"] == -float(np.finfo(np.float32).max) * 2 + 1
    assert codec.decode(codec.encode({"F32": math.nan}))["F32"] == 0.0
    assert codec.saturated == 3
    assert codec.to_raw("F32", 2.5) == 2.5 and codec.to_raw("G32", 2.5) == 0.75


def test_pages_with_odd_ids_wide_and_float_signals_match_cantools(fixed, rng) -> None:
    msg, codec = codec_of(fixed, "BMS_OddPages")  # multiplexer scaled by 0.5
    assert codec.mux_values == (3, 7, 100)
    rows = []
    for page in rng.choice(codec.mux_values, 40).tolist():
        row = {
            s: random_phys(rng, msg.get_signal_by_name(s))
            for s in codec.page_signals(page)
            if s != "Sel"
        }
        rows.append({**row, "Sel": page})
        frame = codec.encode(rows[-1])
        assert frame == msg.encode(rows[-1], strict=False)
        assert_same_dict(codec.decode(frame), msg.decode(frame, decode_choices=False))
        assert codec.decode_raw(frame)["Sel"] == 2 * page
    check_batch(msg, codec, rows)
    cols = {"Sel": np.array([7.0, 3.0]), "Wide": 5, "Fl": 1.5, "Small": 2.0}
    frames = codec.encode_batch(cols)  # a float multiplexer column works as well
    assert bytes(frames[0]) == msg.encode({"Sel": 7, "Wide": 5}, strict=False)
    assert bytes(frames[1]) == msg.encode({"Sel": 3, "Fl": 1.5, "Small": 2.0}, strict=False)
    missing = codec.encode_batch({"Sel": np.array([7, 3])})  # page signals take raw 0
    assert bytes(missing[1]) == msg.encode({"Sel": 3, "Fl": 0.0, "Small": 0}, strict=False)
    with pytest.raises(ValueError, match="unknown multiplexer value 4"):
        codec.encode_batch({"Sel": np.array([4.5])})
    with pytest.raises(ValueError, match="unknown multiplexer value 5"):
        codec.decode_batch(np.frombuffer(codec.encode_raw({"Sel": 10}), np.uint8)[None, :])


def test_a_batch_of_every_cell_page_takes_one_number_per_signal(fixed, rng) -> None:
    msg, codec = codec_of(fixed, "BMS_BigCells")  # Motorola pages of the same layout
    volts = {
        n: round(float(rng.uniform(2.5, 3.6)), 3)
        for n in ("CellA_V", "CellB_V", "CellC_V", "CellD_V")
    }
    cols = {"Mux": np.array([0, 1, 1, 0]), **volts, "Tail": -3}
    frames = codec.encode_batch(cols)
    for r, page in enumerate([0, 1, 1, 0]):
        row = {n: volts[n] for n in codec.page_signals(page) if n in volts}
        row |= {"Mux": page, "Tail": -3} if page else {"Mux": page}
        assert bytes(frames[r]) == msg.encode(row, strict=False) == codec.encode(row)
    out = codec.decode_batch(frames)
    assert out["Tail"][1] == -3 and math.isnan(out["Tail"][0])
    assert out["CellC_V"][1] == msg.decode(bytes(frames[1]))["CellC_V"]
    arrays = {n: np.full(4, v) for n, v in cols.items() if n != "Mux"}
    assert (codec.encode_batch({"Mux": cols["Mux"], **arrays}) == frames).all()


def test_odd_value_types_fall_back_to_the_checked_path(fixed) -> None:
    from fractions import Fraction

    _, codec = codec_of(fixed, "BMS_Cells")
    frame = codec.encode({"Mux": 1, "Cell3_V": 3.3})
    assert codec.encode({"Mux": 1, "Cell3_V": Fraction(33, 10)}) == frame
    assert codec.encode_raw({"Mux": 1, "Cell3_V": Fraction(3300)}) == frame
    with pytest.raises(TypeError, match="signal Cell3_V in message BMS_Cells: cannot encode"):
        codec.encode_raw({"Mux": 1, "Cell3_V": [3300]})
    assert codec.saturated == 0


def test_huge_and_non_finite_batch_values_clamp_without_warnings(fixed) -> None:
    _, codec = codec_of(fixed, "BMS_Mixed")
    frames = codec.encode_batch({"U7": np.array([1e308, -1e308, np.inf, np.nan])})
    assert codec.decode_batch(frames)["U7"].tolist() == [53.5, -10.0, 53.5, -10.0]
    assert codec.saturated == 4
    _, cells = codec_of(fixed, "BMS_Cells")
    with pytest.raises(ValueError, match="unknown multiplexer value"):
        cells.encode_batch({"Mux": np.array([0.0, 1e300])})
