"""How the link hands its frames to python-can: a Message equal to the one keywords build,
by whichever of the three paths python-can's Message allows."""

from __future__ import annotations

import can
import pytest

from bms.canbus import link


def _reference(stamp: float, fid: int, ext: bool, data: bytes) -> can.Message:
    return can.Message(
        timestamp=stamp, arbitration_id=fid, is_extended_id=ext, is_rx=False, data=data
    )


@pytest.mark.parametrize("fid, ext", [(0x18FF10F3, True), (0x123, False)])
def test_a_sent_frame_is_the_message_keywords_would_build(fid: int, ext: bool) -> None:
    data = bytearray(b"\x01\x02\x03\x04\x05\x06\x07\x08")
    got = link._new_message(12.5, fid, ext, data)
    want = _reference(12.5, fid, ext, bytes(data))
    assert got.equals(want, timestamp_delta=0.0)
    assert got.is_rx is False and got.dlc == 8 and not got.is_remote_frame
    assert isinstance(got, can.Message) and link._fields(type(got)) == link._SENT_FIELDS
    for name in link._SENT_FIELDS:  # every field set, as the constructor sets it
        assert getattr(got, name) == getattr(want, name), name


def test_a_message_with_fields_unknown_here_is_built_by_its_own_constructor(monkeypatch) -> None:
    class Future(can.Message):  # a python-can whose Message has one more field
        __slots__ = ("priority",)

    monkeypatch.setattr(link.can, "Message", Future)
    make = link._message_factory()
    assert make.__name__ == "positional"
    got = make(3.0, 0x7FF, False, bytearray(b"\xaa\xbb"))
    assert type(got) is Future
    assert got.equals(_reference(3.0, 0x7FF, False, b"\xaa\xbb"), timestamp_delta=0.0)


def test_another_argument_order_falls_back_to_keywords(monkeypatch) -> None:
    class Reordered(can.Message):  # a python-can whose Message takes data first
        __slots__ = ("priority",)

        def __init__(self, data=None, timestamp=0.0, arbitration_id=0, **kw):  # type: ignore[no-untyped-def]
            super().__init__(timestamp=timestamp, arbitration_id=arbitration_id, data=data, **kw)

    monkeypatch.setattr(link.can, "Message", Reordered)
    make = link._message_factory()
    assert make.__name__ == "keywords"
    got = make(3.0, 0x7FF, False, b"\xaa\xbb")
    assert got.equals(_reference(3.0, 0x7FF, False, b"\xaa\xbb"), timestamp_delta=0.0)
