"""``python -m bench [--json FILE] [--quick]``: measure the plant and print the figures.

Timings on a shared machine vary from run to run; every figure is the best and
the median of several repeats, and the README quotes the best.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bms import Config, Pack, preset
from bms.config import ModelConfig
from bms.sim.profiles import city_bus_drive

from . import canbench, linkbench

_STARTUP = (
    "import time; t0 = time.perf_counter(); import bms; t1 = time.perf_counter(); "
    "p = bms.Pack(); p.warm_up(); t2 = time.perf_counter(); "
    "print(t1 - t0, t2 - t1, t2 - t0)"
)


def _repeat(fn: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_throughput(name: str, cfg: Config, seconds: float, repeats: int) -> dict[str, Any]:
    """Cell-steps per second of the full model through ``Pack.run`` (one core)."""
    pack = Pack(cfg)
    pack.warm_up()
    pack.contactors.command(main_pos=True, main_neg=True)
    dt = 0.1
    one_c = pack.chemistry.capacity_ah * pack.n_parallel
    steps = max(1, int(seconds / dt))
    prof = city_bus_drive(steps * dt, dt, one_c, seed=3) * 0.5  # stays within SOC range
    pack.run(prof[:10], dt)
    times = _repeat(lambda: pack.run(prof, dt), repeats)
    cell_steps = steps * pack.n_cells
    best, med = min(times), float(np.median(times))
    return {
        "name": name,
        "cells": pack.n_cells,
        "steps": steps,
        "cell_steps_per_s_best": cell_steps / best,
        "cell_steps_per_s_median": cell_steps / med,
        "ns_per_cell_step_best": best / cell_steps * 1e9,
        "real_time_factor_best": steps * dt / best,
    }


def bench_closed_loop(calls: int) -> dict[str, Any]:
    """One ``Pack.step`` of the bus pack called from Python (what a scheduler does)."""
    pack = Pack()
    pack.warm_up()
    pack.contactors.command(main_pos=True, main_neg=True)
    rng = np.random.default_rng(5)
    currents = rng.uniform(-100.0, 250.0, calls).tolist()
    pack.step(10.0, 0.01)
    ns = np.empty(calls)
    step = pack.step
    for k, i in enumerate(currents):
        t0 = time.perf_counter_ns()
        step(i, 0.01)
        ns[k] = time.perf_counter_ns() - t0
    meas = np.empty(2000)
    for k in range(meas.size):
        t0 = time.perf_counter_ns()
        pack.sensors.measure()
        meas[k] = time.perf_counter_ns() - t0
    return {
        "cells": pack.n_cells,
        "calls": calls,
        "step_us_median": float(np.median(ns)) / 1e3,
        "step_us_p99": float(np.percentile(ns, 99)) / 1e3,
        "measure_us_median": float(np.median(meas)) / 1e3,
    }


def bench_ekf(calls: int) -> list[dict[str, Any]]:
    """The firmware's SOC EKF: one update of every series group (one 100 ms task's share)."""
    from bms.config import SocConfig
    from bms.firmware.soc import CellModel, make_estimator

    out = []
    for name, cfg in (("bus", Config()), ("container", preset("container"))):
        pack = Pack(cfg)
        model = CellModel(pack.chemistry, pack.n_parallel)
        ekf = make_estimator(
            SocConfig(),
            model,
            pack.sensors.temp_sensor_cells // pack.n_parallel,
            pack.n_series,
            name="ekf",
        )
        m = pack.sensors.measure()
        ekf.initialise(m)
        m.current_a = 120.0
        ekf.update(m, 0.1)
        ns = np.empty(calls)
        for k in range(calls):
            t0 = time.perf_counter_ns()
            ekf.update(m, 0.1)
            ns[k] = time.perf_counter_ns() - t0
        med = float(np.median(ns))
        out.append(
            {
                "name": name,
                "groups": pack.n_series,
                "update_us_median": med / 1e3,
                "group_updates_per_s": pack.n_series / (med * 1e-9),
            }
        )
    return out


def bench_firmware(periods: int) -> list[dict[str, Any]]:
    """The emulated BMS: one 100 ms of firmware (ten 10 ms measurement tasks and one
    estimation task), on measurements of the plant, contactors closed, 150 A."""
    from bms.firmware.bms import EmulatedBms

    out = []
    for name, cfg in (("bus", Config()), ("container", preset("container"))):
        pack = Pack(cfg)
        pack.warm_up()
        bms = EmulatedBms(cfg, pack.chemistry, pack.sensors.temp_sensor_cells)
        pack.contactors.command(main_pos=True, main_neg=True)
        pack.step(150.0, 0.01)
        meas = [pack.sensors.measure() for _ in range(10)]
        t = 0.0
        for _ in range(20):  # warm up, then close the contactors in the state machine
            for m in meas:
                t += 0.01
                bms.vehicle_command(t, "drive")
                bms.tick(t, m)
        ns = np.empty(periods)
        est = np.empty(periods)
        for k in range(periods):
            t0 = time.perf_counter_ns()
            for m in meas:
                t += 0.01
                bms.vehicle_command(t, "drive")
                bms.tick(t, m)
            ns[k] = time.perf_counter_ns() - t0
            bms._charge_as, bms._span_s = 15.0, 0.1  # the estimation task alone
            t0 = time.perf_counter_ns()
            bms._estimate(meas[-1])
            est[k] = time.perf_counter_ns() - t0
        out.append(
            {
                "name": name,
                "groups": pack.n_series,
                "per_100ms_ms_median": float(np.median(ns)) / 1e6,
                "per_100ms_ms_p99": float(np.percentile(ns, 99)) / 1e6,
                "estimation_task_ms_median": float(np.median(est)) / 1e6,
            }
        )
    return out


def bench_startup(repeats: int) -> dict[str, Any]:
    """Cold start (empty numba cache: compile) and warm start (load from the cache)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)

        def once() -> list[float]:
            out = subprocess.run(
                [sys.executable, "-c", _STARTUP],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            return [float(v) for v in out]

        cold = once()
        warm = [once() for _ in range(repeats)]
    best = min(warm, key=lambda r: r[2])
    return {
        "cold_import_s": cold[0],
        "cold_kernels_s": cold[1],
        "cold_total_s": cold[2],
        "warm_import_s": best[0],
        "warm_kernels_s": best[1],
        "warm_total_s": best[2],
    }


def bench_memory() -> dict[str, Any]:
    """Bytes of plant state (state, parameters, scratch, tables) per pack."""
    out = {}
    for name, cfg in (("bus", Config()), ("container", preset("container"))):
        pack = Pack(cfg)
        state = pack._x.nbytes + pack._p.nbytes + pack._g.nbytes
        tables = pack.tables.base.nbytes
        out[name] = {
            "cells": pack.n_cells,
            "state_bytes": state,
            "bytes_per_cell": state / pack.n_cells,
            "table_bytes_per_dt": tables,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = ap.parse_args(argv)
    reps = 2 if args.quick else 5
    sim_s = 600.0 if args.quick else 3600.0
    minimal = Config(
        model=ModelConfig(rc_pairs=1, hysteresis=False, thermal=False, self_discharge=False)
    )
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        },
        "throughput": [
            bench_throughput("bus 200S1P, full model", Config(), sim_s, reps),
            bench_throughput(
                "container 416S13P, full model", preset("container"), sim_s / 20, reps
            ),
            bench_throughput(
                "bus 200S1P, 1 RC, no hysteresis/thermal/self-discharge", minimal, sim_s, reps
            ),
        ],
        "closed_loop": bench_closed_loop(5_000 if args.quick else 50_000),
        "ekf": bench_ekf(500 if args.quick else 5_000),
        "firmware": bench_firmware(100 if args.quick else 1000),
        "startup": bench_startup(2 if args.quick else 3),
        "memory": bench_memory(),
        "can": canbench.run_all(args.quick),
        "links": linkbench.run_all(args.quick),
    }
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(r: dict[str, Any]) -> str:
    lines = ["plant throughput (Pack.run, one core, dt 0.1 s, city-bus current):"]
    for t in r["throughput"]:
        lines.append(
            f"  {t['name']:<56} {t['cell_steps_per_s_best']:>10.3g} cell-steps/s best "
            f"({t['cell_steps_per_s_median']:.3g} median), {t['ns_per_cell_step_best']:.1f} "
            f"ns/cell-step, x{t['real_time_factor_best']:,.0f} real time"
        )
    c = r["closed_loop"]
    lines.append(
        f"closed loop, bus pack ({c['cells']} cells), Pack.step from Python: "
        f"median {c['step_us_median']:.2f} us, p99 {c['step_us_p99']:.2f} us; "
        f"sensors.measure() median {c['measure_us_median']:.2f} us"
    )
    for e in r["ekf"]:
        lines.append(
            f"firmware SOC EKF, {e['name']} ({e['groups']} groups): one update "
            f"{e['update_us_median']:.1f} us median, {e['group_updates_per_s']:.3g} "
            "group-updates/s"
        )
    for f in r["firmware"]:
        lines.append(
            f"emulated BMS, {f['name']} ({f['groups']} groups): 100 ms of firmware "
            f"(10 measurement tasks + 1 estimation task) {f['per_100ms_ms_median']:.2f} "
            f"ms median, {f['per_100ms_ms_p99']:.2f} ms p99; the estimation task alone "
            f"{f['estimation_task_ms_median']:.2f} ms"
        )
    s = r["startup"]
    lines.append(
        f"start-up (import bms + Pack() + warm_up): cold {s['cold_total_s']:.2f} s "
        f"(compile {s['cold_kernels_s']:.2f} s), warm {s['warm_total_s']:.2f} s "
        f"(import {s['warm_import_s']:.2f} s, kernels from cache "
        f"{s['warm_kernels_s']:.2f} s)"
    )
    for name, m in r["memory"].items():
        lines.append(
            f"memory, {name}: {m['state_bytes'] / 1024:.0f} KiB plant state for "
            f"{m['cells']} cells ({m['bytes_per_cell']:.0f} B/cell), tables "
            f"{m['table_bytes_per_dt'] / 1024:.0f} KiB per step length"
        )
    lines.extend(canbench.report_can(r["can"]))
    lines.extend(linkbench.report_links(r["links"]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
