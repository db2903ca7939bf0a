"""Transport benchmarks: the virtual SLCAN adapter, the loopback hub, an idle emulator.

- SLCAN: frames/s from a python-can virtual bus through the pty adapter to a
  python-can ``slcan`` client in another process, and the round trip (the
  client sends, this process answers, the client receives);
- hub: frames/s between two python-can ``socketcand`` clients in two
  processes through the hub, and the round trip;
- CPU use of the emulator in real time (all nodes, 1,198 frames/s), with its
  default 2 ms spin before deadlines and without.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from typing import Any

import can
import numpy as np

from bms.canbus.bus import BusSpec
from bms.canbus.hub import Hub
from bms.canbus.slcan_device import SlcanDevice
from bms.config import Config
from bms.sim.emulator import Emulator

__all__ = ["report_links", "run_all"]

_QUIET = "can.interfaces.socketcand.socketcand"

# a client in another process: "rx N" counts frames, "rtt N" pings (id 0x100 -> 0x101)
_CLIENT = textwrap.dedent(
    """
    import json, logging, sys, time, can
    logging.getLogger("can.interfaces.socketcand.socketcand").setLevel(logging.ERROR)
    kind, target, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if kind == "slcan":
        bus = can.Bus(interface="slcan", channel=target, bitrate=500000, sleep_after_open=0)
    else:
        bus = can.Bus(interface="socketcand", host="127.0.0.1", port=int(target),
                      channel="vcan0", tcp_tune=True)
    print("ready", flush=True)
    if mode == "rx":
        got, first = 0, None
        while got < n:
            m = bus.recv(timeout=5)
            if m is None:
                break
            first = first or time.perf_counter()
            got += 1
        print(json.dumps({"got": got, "s": time.perf_counter() - first}), flush=True)
    else:
        time.sleep(0.3)
        rtt = []
        for i in range(n):
            data = i.to_bytes(4, "little") + bytes(4)
            t0 = time.perf_counter()
            bus.send(can.Message(arbitration_id=0x100, data=data, is_extended_id=False))
            while True:
                m = bus.recv(timeout=2)
                if m is None:
                    sys.exit("lost")
                if m.arbitration_id == 0x101 and bytes(m.data) == data:
                    break
            rtt.append(time.perf_counter() - t0)
        print(json.dumps({"rtt": rtt}), flush=True)
    bus.shutdown()
    """
)


def _client(kind: str, target: str, mode: str, n: int) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, kind, target, mode, str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    return p


def _result(p: subprocess.Popen[str]) -> dict[str, Any]:
    assert p.stdout is not None
    out = json.loads(p.stdout.readline())
    p.wait(timeout=30)
    return out


def _echo(bus: can.BusABC, stop: threading.Event) -> None:
    while not stop.is_set():
        m = bus.recv(timeout=0.1)
        if m is not None and m.arbitration_id == 0x100:
            bus.send(can.Message(arbitration_id=0x101, data=m.data, is_extended_id=False))


def _pings(kind: str, target: str, bus: can.BusABC, n: int) -> dict[str, float]:
    stop = threading.Event()
    t = threading.Thread(target=_echo, args=(bus, stop), daemon=True)
    t.start()
    try:
        r = np.array(_result(_client(kind, target, "rtt", n))["rtt"][20:]) * 1e3
    finally:
        stop.set()
        t.join()
    return {
        "rtt_p50_ms": float(np.percentile(r, 50)),
        "rtt_p99_ms": float(np.percentile(r, 99)),
        "rtt_max_ms": float(r.max()),
    }


def bench_slcan(frames: int, pings: int) -> dict[str, Any]:
    ch = f"bench-slcan-{uuid.uuid4().hex[:6]}"
    dev_bus = can.Bus(interface="virtual", channel=ch)
    bus = can.Bus(interface="virtual", channel=ch)
    try:
        with SlcanDevice(dev_bus, max_queue=100_000) as dev:
            p = _client("slcan", dev.tty_path, "rx", frames)
            while not dev.is_open:
                time.sleep(0.001)
            msg = can.Message(arbitration_id=0x123, data=bytes(8), is_extended_id=False)
            for _ in range(frames):
                bus.send(msg)
            out = _result(p)
            while dev.host_connected:
                time.sleep(0.01)
            res = {
                "frames": out["got"],
                "frames_per_s": out["got"] / out["s"],
                "dropped": dev.stats.dropped_to_host,
            }
            res.update(_pings("slcan", dev.tty_path, bus, pings))
            return res
    finally:
        dev_bus.shutdown()
        bus.shutdown()


def bench_hub(frames: int, pings: int) -> dict[str, Any]:
    logging.getLogger(_QUIET).setLevel(logging.ERROR)
    with Hub(port=0) as hub:
        port = str(hub.address[1])
        p = _client("hub", port, "rx", frames)
        bus = can.Bus(
            interface="socketcand", host="127.0.0.1", port=int(port), channel="vcan0", tcp_tune=True
        )
        try:
            time.sleep(0.3)  # the hub holds frames for a new client for 0.1 s
            for seq in range(frames):
                bus.send(
                    can.Message(arbitration_id=0x18FF0000, data=seq.to_bytes(4, "big") + bytes(4))
                )
            out = _result(p)
            res = {"frames": out["got"], "frames_per_s": out["got"] / out["s"]}
            res.update(_pings("hub", port, bus, pings))
            res["dropped"] = hub.stats.dropped
            return res
        finally:
            bus.shutdown()


def bench_idle_cpu(seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"seconds": seconds}
    for spin in (0.002, 0.0):
        ch = f"bench-idle-{uuid.uuid4().hex[:6]}"
        with Emulator(Config(), bus=BusSpec("virtual", ch), speed=1.0, spin_s=spin) as emu:
            emu.start()
            c0, w0 = time.process_time(), time.perf_counter()
            emu.run(seconds)
            cpu = (time.process_time() - c0) / (time.perf_counter() - w0)
        out[f"cpu_spin_{spin * 1000:g}ms"] = cpu
    return out


def run_all(quick: bool) -> dict[str, Any]:
    return {
        "slcan": bench_slcan(5_000 if quick else 20_000, 300 if quick else 2000),
        "hub": bench_hub(20_000 if quick else 100_000, 300 if quick else 2000),
        "idle": bench_idle_cpu(5.0 if quick else 20.0),
    }


def report_links(r: dict[str, Any]) -> list[str]:
    lines = ["transports to other processes (python-can clients in another process):"]
    for key, name in (("slcan", "virtual SLCAN adapter (pty)"), ("hub", "hub (socketcand)")):
        x = r[key]
        lines.append(
            f"  {name:<28} {x['frames_per_s']:,.0f} frames/s ({x['frames']:,} frames, "
            f"{x['dropped']} dropped); round trip p50 {x['rtt_p50_ms']:.2f} ms, p99 "
            f"{x['rtt_p99_ms']:.2f} ms, max {x['rtt_max_ms']:.2f} ms"
        )
    i = r["idle"]
    lines.append(
        f"  emulator in real time, all nodes: CPU {i['cpu_spin_2ms']:.0%} of a core with the "
        f"2 ms spin before deadlines, {i['cpu_spin_0ms']:.0%} without"
    )
    return lines
