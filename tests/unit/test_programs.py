"""The link's generated send and receive programs (bms.canbus.programs) against cantools:
for every message of the built-in matrix and of a user's (11-bit, big-endian, signed, DBC
multiplexing, a counter without a CRC), random values of every kind go out as the frame
cantools encodes from the same physical values, and come back into a receiver as cantools
decodes that frame."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import can
import cantools
import numpy as np
import pytest

from bms.canbus.binding import Binding, BoundMessage, load_binding
from bms.canbus.crc import CRC8
from bms.canbus.link import CanLink
from tests.integration.test_user_dbc import USER_BINDING, USER_DBC

SIZES = {"cell_voltage_v": 200, "temp_c": 50, "bleed": 200}


class _Node:
    """A node that keeps what the link gives it."""

    def __init__(self, name: str, sizes: dict[str, int]):
        self.name = name
        self.outputs: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}
        self.arrays = {k: np.full(n, -1.0) for k, n in sizes.items()}
        self.array_time = {k: np.full(n, -math.inf) for k, n in sizes.items()}
        self.rx_time: dict[str, float] = {}
        self.seen: list[str] = []

    def on_message(self, t_s: float, name: str) -> None:
        self.seen.append(name)


def _random_outputs(bm: BoundMessage, sizes: dict[str, int], rng) -> dict[str, Any]:
    """Values of every slot of ``bm``, inside the DBC's range (so nothing saturates)."""
    out: dict[str, Any] = {}
    msg = bm.codec.message
    for page in bm.pages:
        for s in page.slots:
            sig = msg.get_signal_by_name(s.signal)
            if s.kind == "enum":
                value: Any = str(rng.choice(sorted(s.to_raw)))
            elif s.kind == "flag":
                value = bool(rng.integers(0, 2))
            elif s.kind == "count":
                value = int(rng.integers(0, 2 ** min(sig.length, 16)))
            else:
                lo = sig.minimum if sig.minimum is not None else 0.0
                hi = sig.maximum if sig.maximum is not None else 100.0
                value = float(rng.uniform(lo, hi)) / s.factor
            if s.index < 0:
                out[s.value] = value
                continue
            arr = out.setdefault(s.value, np.zeros(sizes[s.value]))
            arr[s.index] = float(value)
    return out


def _reference_frame(bm: BoundMessage, page_no: int, out: dict[str, Any], count: int) -> bytes:
    """The frame as cantools encodes it from the physical values the binding implies."""
    msg = bm.codec.message
    page = bm.pages[page_no]
    phys: dict[str, Any] = {}
    for sig in msg.signals:  # unfilled signals: their initial value
        raw = sig.raw_initial or 0
        phys[sig.name] = raw * sig.scale + sig.offset
    phys.update(page.fixed)
    if bm.array is not None and bm.page_signal is not None:  # past the array's end
        on_page = {s.signal for s in page.slots}
        for s in bm.pages[0].slots:
            sig = msg.get_signal_by_name(s.signal)
            if s.index >= 0 and s.signal not in on_page:  # "not available": every bit set
                raw = (1 << (sig.length - 1)) - 1 if sig.is_signed else (1 << sig.length) - 1
                phys[s.signal] = raw * sig.scale + sig.offset
    for s in page.slots:
        sig = msg.get_signal_by_name(s.signal)
        v = out[s.value][s.index] if s.index >= 0 else out[s.value]
        if s.kind == "enum":
            phys[s.signal] = s.to_raw[v] * sig.scale + sig.offset
        elif s.kind == "flag":
            phys[s.signal] = 1 if v else 0
        elif s.kind == "count":
            phys[s.signal] = int(v)
        else:
            phys[s.signal] = v * s.factor
    if bm.counter is not None:
        phys[bm.counter] = count
    if bm.crc is not None:
        phys[bm.crc] = 0
    data = bytearray(msg.encode(phys, strict=False))
    if bm.crc_byte >= 0:
        payload = bytes(data[: bm.crc_byte] + data[bm.crc_byte + 1 :])
        data[bm.crc_byte] = CRC8[bm.crc_algorithm][0](payload)
    return bytes(data)


def _check_received(bm: BoundMessage, page_no: int, data: bytes, node: _Node) -> None:
    """What the receiver holds equals cantools' decoding of the frame."""
    decoded = bm.codec.message.decode(data, decode_choices=False)
    for s in bm.pages[page_no].slots:
        v = decoded[s.signal]
        if s.index >= 0:
            got = node.arrays[s.value][s.index]
            want = float(v != 0) if s.kind == "flag" else v / s.factor
            assert got == want, (bm.name, s.signal)
            assert node.array_time[s.value][s.index] == 7.0
        elif s.kind == "enum":
            assert node.inputs[s.value] == s.to_label[int(v)], (bm.name, s.signal)
        elif s.kind == "flag":
            assert node.inputs[s.value] is bool(v)
        elif s.kind == "count":
            assert node.inputs[s.value] == int(v)
        else:
            assert node.inputs[s.value] == v / s.factor, (bm.name, s.signal)
    assert node.rx_time[bm.name] == 7.0 and node.seen[-1] == bm.name


def _round_trip(binding: Binding, sizes: dict[str, int], rng) -> int:
    roles = {r for bm in binding.messages.values() for r in (bm.sender, *bm.receivers)}
    nodes = {r: _Node(r, sizes) for r in roles}
    link = CanLink(binding, nodes)  # type: ignore[arg-type]
    checked = 0
    for name, bm in binding.messages.items():
        tx = link._tx[name]
        out = _random_outputs(bm, sizes, rng)
        for page_no, program in enumerate(tx.programs):
            count = tx.count
            frame, encoded = program(out)
            data = bytes(frame)
            assert data == _reference_frame(bm, page_no, out, count), (name, page_no)
            receiver = _Node("check", sizes)
            link._rx[bm.key].deliver(7.0, data, receiver)  # type: ignore[arg-type]
            _check_received(bm, page_no, data, receiver)
            store = tx.stores[page_no]  # the same frame handed over inside the process
            assert store is not None and encoded is not None
            local = _Node("check-local", sizes)
            store(7.0, encoded, local)  # type: ignore[arg-type]
            _check_received(bm, page_no, data, local)
            checked += 1
    assert not link.stats.errors
    return checked


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_built_in_matrix_frames_equal_cantools_both_ways(seed: int) -> None:
    binding = load_binding(sizes=SIZES)
    rng = np.random.default_rng(seed)
    assert _round_trip(binding, SIZES, rng) > 100  # every page of every message


def test_a_user_matrix_frames_equal_cantools_both_ways(tmp_path: Path) -> None:
    (tmp_path / "user.dbc").write_text(USER_DBC)
    (tmp_path / "binding.toml").write_text(USER_BINDING)
    sizes = {"cell_voltage_v": 6, "temp_c": 2, "bleed": 6}
    binding = load_binding(tmp_path / "binding.toml", sizes, roles=("pack", "bms", "vcu"))
    rng = np.random.default_rng(4)
    assert _round_trip(binding, sizes, rng) >= 7
    db = cantools.database.load_string(USER_DBC, "dbc")
    assert db.get_message_by_name("CellVolt").is_multiplexed()


def test_scaled_flags_and_value_tables_are_sent_from_their_physical_values(
    tmp_path: Path,
) -> None:
    """A flag of scale 0.5 and a value table over an offset signal: the send program
    hands the codec their physical values (only a raw value that is its physical value
    goes to the codec as it is), and the frames still equal cantools'."""
    odd = USER_DBC.replace(
        " SG_ KPos : 0|1@1+ (1,0) [0|1]", " SG_ KPos : 3|2@1+ (0.5,0) [0|1.5]"
    ).replace(" SG_ Mode : 0|2@1+ (1,0) [0|3]", " SG_ Mode : 0|2@1+ (1,1) [1|4]")
    assert odd.count("(0.5,0) [0|1.5]") == 1 and odd.count("(1,1) [1|4]") == 1
    (tmp_path / "user.dbc").write_text(odd)
    (tmp_path / "binding.toml").write_text(USER_BINDING)
    sizes = {"cell_voltage_v": 6, "temp_c": 2, "bleed": 6}
    binding = load_binding(tmp_path / "binding.toml", sizes, roles=("pack", "bms", "vcu"))
    codec = binding.messages["MasterCmd"].codec
    assert codec.int_range("KPos") is None and codec.int_range("KNeg") == (0, 1)
    for seed in range(5):
        assert _round_trip(binding, sizes, np.random.default_rng(seed)) >= 7


def test_a_value_outside_the_dbc_range_arrives_as_nan_and_is_counted(tmp_path: Path) -> None:
    (tmp_path / "user.dbc").write_text(USER_DBC)  # Soc: 8 bits of 0.5 %, the DBC says 0..100
    (tmp_path / "binding.toml").write_text(USER_BINDING)
    sizes = {"cell_voltage_v": 6, "temp_c": 2, "bleed": 6}
    binding = load_binding(tmp_path / "binding.toml", sizes, roles=("pack", "bms", "vcu"))
    nodes = {r: _Node(r, sizes) for r in ("pack", "bms", "vcu")}
    link = CanLink(binding, nodes)  # type: ignore[arg-type]
    bm = binding.messages["MasterStatus"]
    out = _random_outputs(bm, sizes, np.random.default_rng(6))
    out["soc_display_perc"] = 120.0
    frame, encoded = link._tx["MasterStatus"].programs[0](out)
    data = bytes(frame)
    assert bm.codec.message.decode(data)["Soc"] == 120.0  # on the bus as sent
    receiver = _Node("vcu", sizes)
    link._rx[bm.key].deliver(1.0, data, receiver)  # type: ignore[arg-type]
    assert math.isnan(receiver.inputs["soc_display_perc"])
    got = receiver.inputs["charge_current_limit_a"]  # the rest of the frame is fine
    assert abs(got - out["charge_current_limit_a"]) <= 0.05 + 1e-9  # half an LSB
    assert link.stats.errors["out_of_range"] == 1
    local = _Node("vcu-here", sizes)  # the same frame handed over inside the process
    store = link._tx["MasterStatus"].stores[0]
    assert store is not None
    store(1.0, encoded, local)  # type: ignore[arg-type]
    assert math.isnan(local.inputs["soc_display_perc"])
    assert local.inputs["charge_current_limit_a"] == got
    assert link.stats.errors["out_of_range"] == 2


def _wild_outputs(bm: BoundMessage, sizes: dict[str, int], rng) -> dict[str, Any]:
    """Outputs of ``bm`` with some values missing, not a number, far out of range or not
    in the value table."""
    out = _random_outputs(bm, sizes, rng)
    kind = {s.value: s.kind for page in bm.pages for s in page.slots}
    labels = {v for v, k in kind.items() if k == "enum"}
    for key in list(out):
        pick = rng.random()
        odd = [-3, 10**9, 0] if kind[key] == "count" else [math.nan, 1e12, -1e12, math.inf, 2.5]
        value = odd[int(rng.integers(0, len(odd)))]
        if pick < 0.15:
            del out[key]
        elif pick >= 0.6:
            continue
        elif key in labels:
            out[key] = "NoSuchLabel"
        elif isinstance(out[key], np.ndarray):
            out[key][rng.integers(0, out[key].size, 3)] = value
        else:
            out[key] = value
    return out


def _held(node: _Node) -> tuple[Any, ...]:
    """All a test node holds, comparable (NaN equal to NaN, a label to a label)."""
    return (
        {k: str(v) for k, v in node.inputs.items()},
        {k: a.tobytes() for k, a in node.arrays.items()},
        {k: a.tobytes() for k, a in node.array_time.items()},
        dict(node.rx_time),
        list(node.seen),
    )


@pytest.mark.parametrize("seed", [5, 6])
def test_a_frame_built_here_reaches_a_node_as_its_bytes_would(seed: int) -> None:
    """The local store of a page gives the node what decoding the frame's bytes gives,
    and counts the same errors, for odd values too (saturated, NaN, out of the DBC's range,
    not in a value table), and it checks the alive counter as the receive program does."""
    binding = load_binding(sizes=SIZES)
    roles = {r for bm in binding.messages.values() for r in (bm.sender, *bm.receivers)}
    link = CanLink(binding, {r: _Node(r, SIZES) for r in roles})  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    errors = link.stats.errors
    compared = 0
    for _ in range(4):
        for name, bm in binding.messages.items():
            tx, rx = link._tx[name], link._rx[bm.key]
            out = _wild_outputs(bm, SIZES, rng)
            by_bytes, by_store = _Node("a", SIZES), _Node("b", SIZES)
            for page_no, program in enumerate(tx.programs):
                frame, encoded = program(out)
                store = tx.stores[page_no]
                assert store is not None and encoded is not None
                for _repeat in range(2):  # the second is a repeated counter where there is one
                    before = dict(errors)
                    rx.deliver(3.0, bytes(frame), by_bytes)  # type: ignore[arg-type]
                    counted = {k: v - before.get(k, 0) for k, v in errors.items()}
                    before = dict(errors)
                    store(3.0, encoded, by_store)  # type: ignore[arg-type]
                    assert {k: v - before.get(k, 0) for k, v in errors.items()} == counted
                assert _held(by_store) == _held(by_bytes), (name, page_no)
                compared += 1
    assert errors["counter_repeat"] > 0  # (out of range: a user's matrix, below)
    assert compared > 400


def _two_links(bus_a: can.BusABC, bus_b: can.BusABC, seed: int):
    """Two links of the built-in matrix on their own buses, with equal outputs."""
    binding = load_binding(sizes=SIZES)
    roles = {r for bm in binding.messages.values() for r in (bm.sender, *bm.receivers)}
    links = []
    for bus in (bus_a, bus_b):
        nodes = {r: _Node(r, SIZES) for r in roles}
        rng = np.random.default_rng(seed)
        for bm in binding.messages.values():
            nodes[bm.sender].outputs.update(_random_outputs(bm, SIZES, rng))
        links.append(CanLink(binding, nodes, bus))  # type: ignore[arg-type]
    return binding, links


def test_a_bound_sender_does_what_send_does() -> None:
    buses = [can.Bus(interface="virtual", channel=f"sender-{k // 2}") for k in range(4)]
    try:
        binding, (fast, ref) = _two_links(buses[0], buses[2], seed=8)
        tapped: list[tuple[str, bytes]] = []
        for step in range(3):  # plain; a tap listening; a filter that drops BMS_State
            if step == 1:
                fast.taps.append(lambda t, bm, fid, ext, raw: tapped.append((bm.name, raw)))
            if step == 2:
                fast.taps.clear()
                for link in (fast, ref):
                    link.tx_filter = lambda t, bm, data: None if bm.name == "BMS_State" else data
                    link.filtered.add("BMS_State")
            for name, bm in binding.messages.items():
                senders = [fast.sender(name, p) for p in range(len(bm.pages))]
                if len(bm.pages) == 1:
                    senders.append(fast.sender(name))
                for k, send in enumerate(senders):
                    assert send(1.0 + step) == ref.send(1.0 + step, name, min(k, len(bm.pages) - 1))
        got = [(m.arbitration_id, bytes(m.data)) for m in iter(lambda: buses[1].recv(0), None)]
        want = [(m.arbitration_id, bytes(m.data)) for m in iter(lambda: buses[3].recv(0), None)]
        assert got == want and len(got) > 300
        assert fast.stats.to_dict() == ref.stats.to_dict()
        assert fast.stats.bits_tx == ref.stats.bits_tx > 0
        assert len(tapped) == sum(
            len(bm.pages) + (len(bm.pages) == 1) for bm in binding.messages.values()
        )
        for a, b in zip(fast.nodes.values(), ref.nodes.values(), strict=True):
            assert a.rx_time == b.rx_time and a.seen == b.seen
            assert {k: str(v) for k, v in a.inputs.items()} == {
                k: str(v) for k, v in b.inputs.items()
            }
    finally:
        for bus in buses:
            bus.shutdown()
