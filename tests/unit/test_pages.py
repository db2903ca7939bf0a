"""The compiled pages of an array message (bms.canbus.pages) against cantools and the CRC
functions, on a layout unlike our own DBC's: big-endian signed elements with an offset, the
page number and counter in the middle of the frame, the CRC in byte 0."""

from __future__ import annotations

import math

import cantools
import numpy as np
import pytest

from bms.canbus.binding import BoundMessage, Page, Slot
from bms.canbus.codec import MessageCodec
from bms.canbus.crc import crc8_autosar
from bms.canbus.link import dbc_range
from bms.canbus.pages import PagedArray

DBC = """VERSION ""
NS_ :
BS_:
BU_: Unit Master
BO_ 2564030210 Temps: 8 Unit
 SG_ Crc : 0|8@1+ (1,0) [0|255] "" Master
 SG_ Page : 8|6@1+ (1,0) [0|63] "" Master
 SG_ Alive : 14|2@1+ (1,0) [0|3] "" Master
 SG_ T1 : 23|12@0- (0.25,-10) [-60|150] "degC" Master
 SG_ T2 : 27|12@0- (0.25,-10) [-60|150] "degC" Master
 SG_ T3 : 47|12@0- (0.25,-10) [-60|150] "degC" Master
 SG_ Spare : 51|4@0+ (1,0) [0|15] "" Master
"""

K = 3
N = 10  # 4 pages, the last one carries one element


def _message() -> tuple[BoundMessage, cantools.database.can.Message]:
    db = cantools.database.load_string(DBC, "dbc")
    msg = db.get_message_by_name("Temps")
    sig = msg.get_signal_by_name("Spare")
    sig.raw_initial = 5  # a signal nobody fills keeps its initial value
    pages = []
    for p in range(math.ceil(N / K)):
        slots = [
            Slot(f"T{j + 1}", "temp_c", "float", index=p * K + j) for j in range(K) if p * K + j < N
        ]
        pages.append(Page({"Page": p}, slots))
    bm = BoundMessage(
        name="Temps",
        codec=MessageCodec(msg),
        sender="pack",
        receivers=("bms",),
        period_s=1.0,
        pages=pages,
        counter="Alive",
        counter_mod=4,
        crc="Crc",
        crc_byte=0,
        crc_algorithm="crc8_autosar",
        array="temp_c",
        page_signal="Page",
        per_page=K,
    )
    return bm, msg


def _pages() -> tuple[PagedArray, BoundMessage, cantools.database.can.Message]:
    bm, msg = _message()
    rng = dbc_range(msg.get_signal_by_name("T1"))
    pages = PagedArray.of(bm, rng)
    assert pages is not None
    return pages, bm, msg


def _reference_frame(msg, p: int, values: np.ndarray, count: int) -> bytes:
    """Page p as cantools encodes it, with the CRC over bytes 1..7."""
    fill = (1 << 11) - 1  # "not available": every bit of a signed 12-bit signal but the sign
    sig = {"Crc": 0, "Page": p, "Alive": count % 4, "Spare": 5}
    for j in range(K):
        i = p * K + j
        x = values[i] if i < values.size else math.nan
        raw_x = fill * 0.25 - 10 if math.isnan(x) else x
        sig[f"T{j + 1}"] = raw_x
    data = bytearray(msg.encode(sig, scaling=True, strict=False))
    data[0] = crc8_autosar(bytes(data[1:]))
    return bytes(data)


def test_every_page_is_the_frame_cantools_encodes(rng) -> None:
    pages, _, msg = _pages()
    values = rng.uniform(-40.0, 120.0, N)
    values[4] = math.nan  # a missing reading: "not available"
    values[7] = -3.125  # exactly half an LSB above -3.25: rounds half to even
    frames, clamped = pages.encode(values, count0=2)
    assert clamped == 0
    assert frames.shape == (4, 8)
    for p in range(4):
        assert bytes(frames[p]) == _reference_frame(msg, p, values, 2 + p), p


def test_values_outside_the_bits_are_clamped_and_counted() -> None:
    pages, _, msg = _pages()
    values = np.full(N, 20.0)
    values[0] = 1e6  # above what 12 signed bits carry
    values[1] = -1e6
    frames, clamped = pages.encode(values, count0=0)
    assert clamped == 2
    got = msg.decode(bytes(frames[0]), decode_choices=False)
    assert got["T1"] == pytest.approx(2047 * 0.25 - 10)
    assert got["T2"] == pytest.approx(-2048 * 0.25 - 10)


def test_decoding_matches_cantools_and_makes_every_receive_check(rng) -> None:
    pages, _, msg = _pages()
    values = rng.uniform(-40.0, 120.0, N)
    values[5] = 149.0
    frames, _ = pages.encode(values, count0=0)
    frames = frames.copy()
    # page 2 says 160 degC for its first element (above the DBC's 150): out of range
    cells = msg.decode(bytes(frames[2]), decode_choices=False)
    cells["T1"] = 160.0
    bad = bytearray(msg.encode(cells, strict=False))
    bad[0] = crc8_autosar(bytes(bad[1:]))
    frames[2] = np.frombuffer(bytes(bad), np.uint8)
    arr = np.full(N, -1.0)
    times = np.full(N, -math.inf)
    got = pages.decode(frames, -1, arr, times, 5.0)
    assert (got.counter_jump, got.counter_repeat, got.out_of_range, got.bad_crc) == (0, 0, 1, 0)
    assert got.stored == 4 and got.last_counter == 3
    for p in range(4):
        ref = msg.decode(bytes(frames[p]), decode_choices=False)
        for j in range(K):
            i = p * K + j
            if i >= N:
                continue
            want = math.nan if (p, j) == (2, 0) else ref[f"T{j + 1}"]
            np.testing.assert_equal(arr[i], want)
    assert np.all(times == 5.0)


def test_a_bad_crc_a_repeated_and_a_skipped_counter_are_counted() -> None:
    pages, _, _ = _pages()
    frames, _ = pages.encode(np.full(N, 25.0), count0=1)  # counters 1, 2, 3, 0
    frames = frames.copy()
    frames[1, 3] ^= 0x10  # page 1 corrupted: its CRC fails
    arr = np.full(N, -1.0)
    times = np.full(N, -math.inf)
    got = pages.decode(frames, 0, arr, times, 1.0)  # 0 was the last counter seen
    assert got.bad_crc == 1
    assert got.counter_jump == 1  # 1 -> 3: page 1 was lost
    assert got.stored == 3 and got.last_counter == 0
    assert np.all(arr[3:6] == -1.0) and np.all(arr[:3] == 25.0)
    # the same frames again: page 0 repeats nothing (0 -> 1 is a step), so take the last
    again = pages.decode(frames[3:4], 0, arr, times, 2.0)
    assert again.counter_repeat == 1 and again.stored == 0


def test_a_layout_it_cannot_express_goes_frame_by_frame() -> None:
    bm, msg = _message()
    rng = dbc_range(msg.get_signal_by_name("T1"))
    bm.pages[1].slots[0] = Slot("T2", "temp_c", "float", index=3)  # pages of other layouts
    assert PagedArray.of(bm, rng) is None
    bm, _ = _message()
    bm.pages[0].slots.append(Slot("Spare", "mode", "count"))  # a scalar on a page
    assert PagedArray.of(bm, rng) is None
