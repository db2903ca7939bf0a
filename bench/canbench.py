"""CAN benchmarks: the emulator's speed on virtual time, real-time jitter, codec cost.

- speed factor on virtual time: all nodes, every frame encoded from the DBC
  layout, sent through a python-can ``virtual`` bus, decoded by its receiver;
- real-time period jitter of a 10 ms and a 100 ms message, as a second bus on
  the same virtual channel sees them (python-can stamps each frame when it is
  sent);
- encode and decode cost per frame: the emulator's compiled codec against
  cantools (``encode(strict=False)``, ``decode``) on the same messages, and the
  compiled pages of the cell voltages (one kernel call per burst) as the link
  sends and receives them.
"""

from __future__ import annotations

import collections
import itertools
import statistics
import time
from typing import Any

import can
import cantools
import numpy as np

from bench.opcount import bytecodes_per_s
from bms.canbus.binding import DBC_DIR, load_binding
from bms.canbus.codec import MessageCodec
from bms.canbus.link import dbc_range
from bms.canbus.pages import PagedArray
from bms.config import Config, preset
from bms.sim.emulator import Emulator
from bms.sim.mission import Mission, Phase

__all__ = [
    "bench_bytecodes",
    "bench_codec",
    "bench_jitter",
    "bench_virtual_speed",
    "report_can",
]

_ch = itertools.count()


def _drive_mission(seconds: float, one_c_a: float) -> Mission:
    """Alternating 0.5C and 0.1C every 10 s, after 1 s of standby."""
    n = int(seconds / 0.1)
    prof = np.where((np.arange(n) // 100) % 2 == 0, 0.5 * one_c_a, 0.1 * one_c_a)
    return Mission("bench", [Phase("drive", seconds, prof, 0.1)], one_c_a, ready_s=1.0)


def bench_virtual_speed(name: str, cfg: Config, sim_s: float, repeats: int = 3) -> dict[str, Any]:
    """Speed factor of ``sim_s`` simulated seconds after 10 s of start-up, best and median
    of ``repeats`` fresh emulators (the machine is shared: the best is the figure)."""
    runs = [_virtual_run(cfg, sim_s) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["wall_s"])
    walls = [r["wall_s"] for r in runs]
    return {
        "name": name,
        "cells": cfg.pack.n_cells,
        "simulated_s": sim_s,
        "repeats": repeats,
        **best,
        "speed_factor": sim_s / best["wall_s"],
        "speed_factor_median": sim_s / float(np.median(walls)),
        "frames_per_sim_s": best["frames"] / sim_s,
        "frames_per_wall_s": best["frames"] / best["wall_s"],
    }


def _virtual_run(cfg: Config, sim_s: float) -> dict[str, Any]:
    one_c = 280.0 * cfg.pack.parallel
    ch = f"bench-{next(_ch)}"
    bus = can.Bus(interface="virtual", channel=ch, receive_own_messages=False)
    try:
        with Emulator(cfg, bus=bus, mission=_drive_mission(sim_s + 20.0, one_c)) as emu:
            t0 = time.perf_counter()
            emu.start()
            startup = time.perf_counter() - t0
            emu.run(10.0)  # precharge, first frames
            f0 = emu.link.stats.frames_tx
            t0 = time.perf_counter()
            emu.run(10.0 + sim_s)
            wall = time.perf_counter() - t0
            return {
                "wall_s": wall,
                "frames": emu.link.stats.frames_tx - f0,
                "bus_load_dbc": emu.dbc_bus_load(),
                "startup_s": startup,
                "errors": sum(emu.link.stats.errors.values()),
                "faults": len(emu.faults_seen),
            }
    finally:
        bus.shutdown()


def bench_bytecodes(cfg: Config, sim_s: float = 2.0, top: int = 8) -> dict[str, Any]:
    """Python bytecodes per simulated second (bench.opcount), 10 s into the drive, and the
    functions that run the most of them."""
    ch = f"bench-ops-{next(_ch)}"
    bus = can.Bus(interface="virtual", channel=ch, receive_own_messages=False)
    per: collections.Counter[str] = collections.Counter()
    try:
        with Emulator(cfg, bus=bus, mission=_drive_mission(sim_s + 20.0, 280.0)) as emu:
            emu.run(10.0)
            f0 = emu.link.stats.frames_tx
            n = bytecodes_per_s(emu, sim_s, per)
            frames = (emu.link.stats.frames_tx - f0) / sim_s
    finally:
        bus.shutdown()
    return {
        "simulated_s": sim_s,
        "bytecodes_per_sim_s": n,
        "frames_per_sim_s": frames,
        "top": [(name, k / sim_s) for name, k in per.most_common(top)],
    }


def bench_jitter(seconds: float) -> dict[str, Any]:
    """Real time: periods of a 10 ms and a 100 ms message, seen from a second bus."""
    ch = f"bench-rt-{next(_ch)}"
    bus = can.Bus(interface="virtual", channel=ch, receive_own_messages=False)
    watch = can.Bus(interface="virtual", channel=ch, receive_own_messages=False)
    db = cantools.database.can.Database()
    db.add_dbc_file(str(DBC_DIR / "bms_pack.dbc"))
    db.add_dbc_file(str(DBC_DIR / "bms_vehicle.dbc"))
    ids = {
        db.get_message_by_name("PDU_Current").frame_id: 0.010,
        db.get_message_by_name("BMS_State").frame_id: 0.100,
    }
    stamps: dict[int, list[float]] = {i: [] for i in ids}

    def on_frame(m: can.Message) -> None:  # in the notifier's thread, as a tool would
        if m.arbitration_id in stamps:
            stamps[m.arbitration_id].append(m.timestamp)

    notifier = can.Notifier(watch, [on_frame], timeout=0.1)
    try:
        mission = _drive_mission(seconds + 5.0, 280.0)
        with Emulator(Config(), bus=bus, mission=mission, speed=1.0) as emu:
            emu.run(seconds + 2.0)
            overruns = emu.scheduler.stats.overruns
    finally:
        notifier.stop()
        bus.shutdown()
        watch.shutdown()
    out: dict[str, Any] = {"seconds": seconds, "overruns": overruns}
    for fid, period in ids.items():
        ts = np.array(stamps[fid][int(2.0 / period) :])  # after the first 2 s
        err_ms = np.abs(np.diff(ts) - period) * 1000.0
        out[f"{int(period * 1000)}ms"] = {
            "frames": int(ts.size),
            "p50_ms": float(np.percentile(err_ms, 50)),
            "p99_ms": float(np.percentile(err_ms, 99)),
            "max_ms": float(err_ms.max()),
        }
    return out


def bench_codec(repeats: int) -> list[dict[str, Any]]:
    db = cantools.database.can.Database()
    for f in ("bms_vehicle.dbc", "bms_pack.dbc", "charger.dbc"):
        db.add_dbc_file(str(DBC_DIR / f))
    rows = []
    for name in ("PDU_Current", "BMS_State", "BMS_Protection", "CMU_CellVoltages", "CHG_Status"):
        msg = db.get_message_by_name(name)
        codec = MessageCodec(msg)
        values = {s.name: (s.minimum or 0) for s in msg.signals}
        data = msg.encode(values, strict=False)

        def per_call(fn: Any) -> float:
            best = []
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(repeats):
                    fn()
                best.append((time.perf_counter() - t0) / repeats * 1e6)
            return statistics.median(best)

        rows.append(
            {
                "message": name,
                "signals": len(msg.signals),
                "encode_us": per_call(lambda c=codec, v=values: c.encode(v)),
                "decode_us": per_call(lambda c=codec, d=data: c.decode(d)),
                "cantools_encode_us": per_call(lambda m=msg, v=values: m.encode(v, strict=False)),
                "cantools_decode_us": per_call(lambda m=msg, d=data: m.decode(d)),
            }
        )
    # a whole burst of cell-voltage pages at once, as the link sends and receives them
    binding = load_binding(sizes={"cell_voltage_v": 200, "temp_c": 50, "bleed": 200})
    bm = binding.messages["CMU_CellVoltages"]
    pages = PagedArray.of(bm, dbc_range(bm.codec.message.get_signal_by_name("CellVoltage1")))
    assert pages is not None
    cells = np.linspace(3.0, 3.4, 200)
    arr, times = np.zeros(200), np.zeros(200)
    pages.decode(pages.encode(cells, 0)[0], -1, arr, times, 0.0)  # load the kernels first
    t0 = time.perf_counter()
    loops = repeats // 10 or 1
    for k in range(loops):
        frames, _ = pages.encode(cells, k)
        pages.decode(frames, k - 1, arr, times, 1.0)
    per = (time.perf_counter() - t0) / loops / pages.n_pages * 1e6
    rows.append(
        {
            "message": f"CMU_CellVoltages x{pages.n_pages} pages (compiled, encode + decode)",
            "signals": len(bm.codec.message.signals),
            "batch_us_per_frame": per,
        }
    )
    return rows


def run_all(quick: bool) -> dict[str, Any]:
    return {
        "speed": [
            bench_virtual_speed("bus 200S1P", Config(), 30.0 if quick else 60.0),
            bench_virtual_speed("container 416S13P", preset("container"), 10.0 if quick else 30.0),
        ],
        "bytecodes": bench_bytecodes(Config()),
        "jitter": bench_jitter(10.0 if quick else 60.0),
        "codec": bench_codec(2_000 if quick else 20_000),
    }


def report_can(r: dict[str, Any]) -> list[str]:
    lines = ["CAN emulator, virtual time, all nodes, python-can virtual bus:"]
    for s in r["speed"]:
        lines.append(
            f"  {s['name']:<20} x{s['speed_factor']:,.1f} real time, median of "
            f"{s['repeats']} x{s['speed_factor_median']:,.1f} "
            f"({s['simulated_s']:.0f} s in {s['wall_s']:.2f} s), {s['frames_per_sim_s']:,.0f} "
            f"frames per simulated s, {s['frames_per_wall_s']:,.0f} frames/s sustained, "
            f"bus load {s['bus_load_dbc']:.1%} at 500 kbit/s, {s['errors']} errors, "
            f"{s['faults']} faults"
        )
    b = r["bytecodes"]
    lines.append(
        f"  interpreter work, bus pack: {b['bytecodes_per_sim_s']:,.0f} Python bytecodes per "
        f"simulated s ({b['bytecodes_per_sim_s'] / b['frames_per_sim_s']:,.0f} per frame; "
        "the same on any machine), most in:"
    )
    lines.append("    " + ", ".join(f"{name} {k:,.0f}" for name, k in b["top"]))
    j = r["jitter"]
    lines.append(f"CAN emulator, real time, {j['seconds']:.0f} s, period error:")
    for key in ("10ms", "100ms"):
        x = j[key]
        lines.append(
            f"  {key:>5} message: p50 {x['p50_ms']:.3f} ms, p99 {x['p99_ms']:.3f} ms, "
            f"max {x['max_ms']:.3f} ms ({x['frames']} frames)"
        )
    lines.append(f"  scheduler overruns: {j['overruns']}")
    lines.append("frame codec (compiled from the DBC) against cantools, per frame:")
    for c in r["codec"]:
        if "batch_us_per_frame" in c:
            lines.append(f"  {c['message']}: {c['batch_us_per_frame']:.2f} us")
            continue
        lines.append(
            f"  {c['message']:<18} ({c['signals']:>2} signals) encode {c['encode_us']:.2f} us "
            f"(cantools {c['cantools_encode_us']:.2f}), decode {c['decode_us']:.2f} us "
            f"(cantools {c['cantools_decode_us']:.2f})"
        )
    return lines
