"""``bms-emu run``: the emulator on a CAN bus: pack, BMS, vehicle and charger nodes.

Runs the nodes named by --nodes (all by default) on the bus named by
--interface/--channel/--bitrate (python-can's own configuration when left
out, else the virtual bus), through a mission: the built-in city-bus day
(drive, park, depot charge, park), a depot charge, a constant current, or a
CSV profile. --speed max runs on virtual time (deterministic: the same seed
gives the same CAN log); realtime or a factor runs on the wall clock, for
hardware in the loop. A status line shows progress; Ctrl-C stops cleanly,
with the log complete.

Real BMS on the bench:   bms-emu run --nodes pack,vcu,charger --interface slcan
                         --channel /dev/ttyACM0 --speed realtime
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import can

from bms.chemistry import load_chemistry
from bms.cli import sim_time
from bms.cli.common import add_bus_options, add_config_options, bus_spec, config_from
from bms.errors import ConfigError, InputError
from bms.sim.emulator import Emulator, RunSummary, parse_nodes
from bms.sim.mission import make_mission

__all__ = ["add_subparser", "parse_speed"]


def add_subparser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the emulator on a CAN bus (virtual by default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(p)
    add_bus_options(p)
    p.add_argument(
        "--nodes",
        default="all",
        help="nodes to run here: pack,bms,vcu,charger or all (default); real hardware "
        "plays the others",
    )
    p.add_argument("--binding", metavar="TOML", help="your DBC binding (default: dbc/binding.toml)")
    p.add_argument(
        "--speed", default="max", help="max (virtual time, default), realtime, or a factor"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S simulated seconds")
    p.add_argument(
        "--profile",
        default="city-bus-day",
        metavar="NAME|CSV",
        help="city-bus-day (default), depot-charge, constant, or a CSV file time_s,current_a",
    )
    p.add_argument("--current", type=float, metavar="A", help="current of --profile constant")
    p.add_argument("--log", metavar="FILE", help="CAN log: .asc, .blf or .log (python-can)")
    p.add_argument("--seed", type=int, help="seed of the pack's cell spread and the drive cycle")
    p.add_argument("--summary", metavar="FILE.json", help="write the summary as JSON")
    p.add_argument("--nvm", metavar="FILE", help="the BMS's persistent memory file")
    p.add_argument(
        "--slcan-pty",
        action="store_true",
        help="also offer the bus as a virtual SLCAN adapter on a pseudo-terminal (virtual "
        "interface only): its path is printed; python-can's slcan, cantools monitor and "
        "other SLCAN tools open it like /dev/ttyACM0",
    )
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.set_defaults(func=run)


def parse_speed(text: str) -> float | None:
    """``max`` -> None (virtual time), ``realtime`` -> 1.0, ``10`` or ``10x`` -> 10.0."""
    t = text.strip().lower()
    if t == "max":
        return None
    if t in ("realtime", "real-time", "rt"):
        return 1.0
    try:
        v = float(t.rstrip("x"))
    except ValueError:
        raise ConfigError(
            f"must be max, realtime or a factor, got {text!r}", field="--speed"
        ) from None
    if not v > 0 or v != v or v == float("inf"):
        raise ConfigError(f"must be a factor > 0, got {text!r}", field="--speed")
    return v


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = config_from(args)
    speed = parse_speed(args.speed)
    roles = parse_nodes(args.nodes)
    if args.duration is not None and not args.duration > 0:
        raise InputError(f"--duration: must be > 0 s, got {args.duration}")
    chem = load_chemistry(cfg.pack.chemistry)
    one_c = chem.capacity_ah * cfg.pack.parallel
    mission = make_mission(
        args.profile,
        one_c,
        duration_s=args.duration,
        current_a=args.current,
        seed=args.seed if args.seed is not None else 0,
    )
    for opt, path in (("--summary", args.summary), ("--nvm", args.nvm)):
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise ConfigError(f"the folder of {path} does not exist", field=opt)
    spec = bus_spec(args, cfg)
    if args.slcan_pty and spec.resolved().interface != "virtual":
        raise ConfigError(
            "needs the virtual interface (it bridges the emulator's virtual bus to a pty); "
            "on a real bus, use the adapter itself",
            field="--slcan-pty",
        )
    emu = Emulator(
        cfg,
        nodes=roles,
        binding=args.binding,
        bus=spec,
        mission=mission,
        speed=speed,
        log_path=args.log,
        nvm_path=args.nvm,
    )
    tty = sys.stderr.isatty()
    device = None
    device_bus = None
    try:
        if args.slcan_pty:
            spec_used = emu._bus_spec
            assert spec_used is not None
            from bms.canbus.slcan_device import SlcanDevice

            device_bus = can.Bus(
                interface="virtual", channel=spec_used.channel, receive_own_messages=False
            )
            device = SlcanDevice(device_bus)
            device.start()
            print(f"slcan adapter on {device.tty_path}", flush=True)
        print(
            f"bms-emu run: {cfg.pack.series}S{cfg.pack.parallel}P {chem.name}, nodes "
            f"{','.join(roles)}, {emu.bus and emu._bus_spec and emu._bus_spec.describe()}, "
            f"{'virtual time' if speed is None else f'real time x{speed:g}'}, "
            f"mission {mission.name}",
            file=sys.stderr,
        )

        def status(e: Emulator) -> None:
            if args.quiet:
                return
            line = e.status_line()
            if tty:
                print("\r" + line[:160].ljust(160), end="", file=sys.stderr, flush=True)
            else:
                print(line, file=sys.stderr, flush=True)

        res = emu.run(args.duration, status=status)
        if tty and not args.quiet:
            print(file=sys.stderr)
    finally:
        if device is not None:
            device.stop()
        if device_bus is not None:
            device_bus.shutdown()
        emu.close()
    print(summary_text(res, emu))
    if args.summary:
        d = res.to_dict()
        d["pack"] = f"{cfg.pack.series}S{cfg.pack.parallel}P {chem.name}"
        try:
            Path(args.summary).write_text(json.dumps(d, indent=2) + "\n")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.summary}: {exc}", field="--summary") from None
    return 130 if res.interrupted else 0


def summary_text(res: RunSummary, emu: Emulator) -> str:
    f = res.frames
    lines = [
        f"  stopped       {res.stopped_by}",
        f"  time          {sim_time(res.simulated_s)} simulated in {res.wall_s:.1f} s wall "
        f"(x{res.speed_factor:,.0f})",
        f"  frames        {f.get('frames_sent', 0):,} sent, {f.get('frames_received', 0):,} "
        f"received from the bus, {f.get('error_total', 0)} bad "
        f"{dict(f.get('errors', {})) or ''}".rstrip(),
        f"  bus load      {res.bus_load:.1%} measured, {res.bus_load_dbc:.1%} from the DBC "
        f"periods at {emu.bitrate} bit/s",
    ]
    if res.phases:
        lines.append(f"  phases        {', '.join(res.phases)}")
    if res.soc_true:
        lines.append(
            f"  SOC truth     mean {res.soc_true['mean']:.1%} "
            f"[{res.soc_true['min']:.1%} .. {res.soc_true['max']:.1%}]"
        )
    if res.soc_estimated:
        lines.append(
            f"  SOC estimate  mean {res.soc_estimated['mean']:.1%} "
            f"[{res.soc_estimated['min']:.1%} .. {res.soc_estimated['max']:.1%}]"
        )
    lines.append(f"  faults        {'; '.join(res.faults_seen) or 'none'}")
    if res.link_losses:
        lines.append(
            f"  CAN link      lost {res.link_losses} times, down {res.link_down_s:.1f} s, "
            f"{f.get('frames_unsent', 0):,} frames not sent"
        )
    if emu.scheduler.realtime:
        lines.append(
            f"  real time     {res.overruns} overruns, {res.skipped_periods} periods skipped"
        )
    return "\n".join(lines)
