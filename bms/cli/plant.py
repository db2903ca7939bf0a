"""``bms-emu plant``: the pack plant alone through a scenario, with a summary.

No BMS and no CAN: the built-in city-bus day (drive with layovers, park,
depot CC-CV charge), a constant current or a CSV profile, on the built-in
bus pack or a configuration file. For the whole emulator on CAN use
``bms-emu run``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bms.cli import sim_time
from bms.cli.common import add_config_options, config_from
from bms.plant import Pack
from bms.sim import profiles
from bms.sim.scenario import ScenarioResult, run_city_bus_day, run_profile


def add_subparser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plant",
        help="run the pack plant alone (no BMS, no CAN) through a scenario",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(p, "bus (default), container, single_cell")
    p.add_argument(
        "--profile",
        default="city-bus-day",
        metavar="NAME|CSV",
        help="city-bus-day (default), constant, or a CSV file time_s,current_a",
    )
    p.add_argument(
        "--current",
        type=float,
        default=140.0,
        metavar="A",
        help="current of the constant profile, A (+ = discharge; default 140)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="length of the drive or profile, s (city-bus-day: 18000)",
    )
    p.add_argument("--dt", type=float, default=0.1, metavar="S", help="plant step, s (0.1)")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the pack's cell spread and of the drive cycle",
    )
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    p.set_defaults(func=run_plant)


def run_plant(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    t0 = time.perf_counter()
    pack = Pack(cfg)
    pack.warm_up()
    startup_s = time.perf_counter() - t0
    seed = args.seed if args.seed is not None else 0
    one_c = pack.chemistry.capacity_ah * pack.n_parallel
    if args.profile == "city-bus-day":
        drive_s = args.duration if args.duration is not None else 5 * 3600.0
        res = run_city_bus_day(pack, dt_s=args.dt, drive_s=drive_s, seed=seed)
    elif args.profile == "constant":
        dur = args.duration if args.duration is not None else 3600.0
        res = run_profile(
            pack,
            profiles.constant(dur, args.dt, args.current),
            args.dt,
            f"constant {args.current:g} A",
        )
    else:
        prof = profiles.load_csv(args.profile, args.dt)
        if args.duration is not None:
            prof = prof[: round(args.duration / args.dt)]
        res = run_profile(pack, prof, args.dt, Path(args.profile).name)
    print(summary(pack, res, startup_s, one_c))
    if args.json:
        d = res.to_dict()
        d["startup_s"] = startup_s
        d["pack"] = f"{pack.n_series}S{pack.n_parallel}P {pack.chemistry.name}"
        Path(args.json).write_text(json.dumps(d, indent=2) + "\n")
    return 0


def summary(pack: Pack, res: ScenarioResult, startup_s: float, one_c: float) -> str:
    m = res.measured
    s0, s1 = res.soc_start, res.soc_end
    lines = [
        f"bms-emu plant: {res.name} on {pack.n_series}S{pack.n_parallel}P "
        f"{pack.chemistry.name} ({pack.n_cells} cells, {one_c:.0f} Ah, "
        f"{pack.n_series * pack.chemistry.nominal_voltage_v:.0f} V nominal)",
        f"  phases        {', '.join(res.phases)}",
        f"  time          {sim_time(res.simulated_s)} simulated in {res.wall_s:.2f} s wall "
        f"(x{res.speed_factor:,.0f} real time, {res.cell_steps_per_s:.3g} cell-steps/s; "
        f"start-up {startup_s:.2f} s)",
        f"  SOC (truth)   start mean {s0[0]:.1%} [{s0[1]:.1%} .. {s0[2]:.1%}]  ->  "
        f"end mean {s1[0]:.1%} [{s1[1]:.1%} .. {s1[2]:.1%}]",
        f"  throughput    discharged {res.discharged_ah:.1f} Ah / {res.discharged_kwh:.1f} kWh, "
        f"charged {res.charged_ah:.1f} Ah / {res.charged_kwh:.1f} kWh",
        f"  cell voltage  {res.min_group_voltage_v:.3f} .. {res.max_group_voltage_v:.3f} V "
        f"over the run (truth)",
        f"  temperature   hottest cell {res.max_temp_c:.1f} degC",
        f"  out of range  {res.cells_empty} cells below 0 % SOC, {res.cells_full} above 100 %",
        "  sensors now   cell {:.4f} .. {:.4f} V (truth {:.4f} .. {:.4f}), pack {:.2f} V "
        "(truth {:.2f}), current {:.2f} A (truth {:.2f}), hottest sensor {:.1f} degC "
        "(truth {:.1f})".format(
            m["cell_voltage_min_v"],
            m["cell_voltage_max_v"],
            m["true_group_voltage_min_v"],
            m["true_group_voltage_max_v"],
            m["pack_voltage_v"],
            m["true_pack_voltage_v"],
            m["current_a"],
            m["true_current_a"],
            m["temp_max_c"],
            m["true_temp_max_c"],
        ),
    ]
    return "\n".join(lines)
