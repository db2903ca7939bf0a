"""The link's receive-error log is rate-limited per kind, whatever the identifiers: a flood
of distinct unknown identifiers gives a few lines (not one per identifier), every frame is
still counted, the memory of what was logged stays bounded, and no count is lost at the end
(``flush_log``)."""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import can
import numpy as np
import pytest

from bms.canbus.binding import load_binding
from bms.canbus.link import ERROR_KINDS, CanLink

SIZES = {"cell_voltage_v": 200, "temp_c": 50, "bleed": 200}
FLOOD = 2000


class _Node:
    def __init__(self, name: str):
        self.name = name
        self.outputs: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}
        self.arrays = {k: np.full(n, -1.0) for k, n in SIZES.items()}
        self.array_time = {k: np.full(n, -math.inf) for k, n in SIZES.items()}
        self.rx_time: dict[str, float] = {}

    def on_message(self, t_s: float, name: str) -> None:
        pass


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def link() -> tuple[CanLink, _Clock]:
    binding = load_binding(sizes=SIZES)
    link = CanLink(binding, {"bms": _Node("bms")}, log_interval_s=10.0)  # type: ignore[dict-item]
    clock = _Clock()
    link._clock = clock
    return link, clock


def _unknown_ids(link: CanLink, n: int) -> list[int]:
    ids = [0x1000000 + i for i in range(n)]
    assert not any((i, True) in link.binding.known for i in ids)
    return ids


def _frame(fid: int, data: bytes = bytes(8)) -> can.Message:
    return can.Message(arbitration_id=fid, is_extended_id=True, data=data)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_flood_of_distinct_unknown_ids_is_counted_and_logged_per_kind(
    link: tuple[CanLink, _Clock], caplog: pytest.LogCaptureFixture
) -> None:
    lk, clock = link
    caplog.set_level(logging.WARNING, logger="bms.canbus")
    # a message the node here receives and nobody here sends: a short frame is a bad DLC
    rx_bm = next(bm for bm in lk.binding.messages.values() if "bms" in bm.receivers)
    assert rx_bm.sender != "bms"
    ids = _unknown_ids(lk, FLOOD)
    for k, fid in enumerate(ids):
        lk.receive(k * 1e-4, _frame(fid))
        if k == FLOOD // 2:  # another kind during the flood: its own first line
            lk.receive(k * 1e-4, _frame(rx_bm.codec.frame_id, bytes(3)))
    assert lk.stats.errors["unknown_id"] == FLOOD
    assert lk.stats.errors["bad_dlc"] == 1
    lines = _warnings(caplog)
    assert len(lines) == 2, lines  # the first of each kind, no summary yet (no wall time)
    assert f"id 0x{ids[0]:X}: unknown id" in lines[0]
    assert f"id 0x{rx_bm.codec.frame_id:X}: bad dlc" in lines[1]
    assert len(lk._logged) <= len(ERROR_KINDS)  # bounded, not one entry per identifier
    assert len(lk._last_log) <= len(ERROR_KINDS) and len(lk._since_log) <= len(ERROR_KINDS)

    caplog.clear()
    clock.now += 10.5  # past the interval: the next frame reports what was held back
    last = 0x1FFFFF0
    lk.receive(1.0, _frame(last))
    lines = _warnings(caplog)
    assert len(lines) == 1, lines
    m = re.fullmatch(
        r"unknown id: (\d+) more since the last report \(last: id 0x(\w+), .*\)", lines[0]
    )
    assert m is not None, lines[0]
    assert int(m.group(1)) == FLOOD  # 1999 held back in the flood, and this one
    assert int(m.group(2), 16) == last
    assert lk.stats.errors["unknown_id"] == FLOOD + 1

    caplog.clear()
    for fid in ids[:50]:  # inside the new interval: counted, not logged
        lk.receive(1.1, _frame(fid))
    assert _warnings(caplog) == []
    assert lk.stats.errors["unknown_id"] == FLOOD + 51
    lk.flush_log()  # at shutdown: the pending count is not lost
    lines = _warnings(caplog)
    assert len(lines) == 1 and lines[0].startswith("unknown id: 50 more since the last report")
    caplog.clear()
    lk.flush_log()  # nothing pending: nothing logged
    assert _warnings(caplog) == []


def test_the_emulator_logs_what_the_rate_limit_held_back_when_it_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bms.sim.emulator import Emulator

    bus = can.Bus(interface="virtual", channel="flush-log", receive_own_messages=False)
    tester = can.Bus(interface="virtual", channel="flush-log", receive_own_messages=False)
    try:
        with caplog.at_level(logging.WARNING, logger="bms.canbus"):
            with Emulator(nodes=("pack", "bms", "vcu"), bus=bus) as emu:
                emu.run(0.5)
                for k in range(30):
                    msg = can.Message(arbitration_id=0x1FFF0000 + k, data=bytes(8))
                    tester.send(msg)
                emu.run(1.0)
                assert emu.link.stats.errors["unknown_id"] == 30
                assert len(_warnings(caplog)) == 1  # the first; 29 held back
        lines = _warnings(caplog)
        assert len(lines) == 2, lines
        assert lines[1].startswith("unknown id: 29 more since the last report (last: id 0x1FFF001D")
    finally:
        bus.shutdown()
        tester.shutdown()
