"""``bms-emu dbc check`` and ``bms-emu dbc dump``: a DBC binding, checked or listed.

``check`` loads the DBC files a binding names and checks the binding against
them for the given pack (every problem listed at once; exit 2 when any) and
prints the bus load its periods give at ``--bitrate``: above 100 % the matrix does
not fit (exit 2), above the 40 % design limit a warning. ``dump`` lists every bound message:
identifier, period, sender and receivers, and which signal carries which value.
"""

from __future__ import annotations

import argparse
import sys

from bms.canbus.binding import describe, load_binding
from bms.canbus.bus import BusSpec
from bms.canbus.link import matrix_load
from bms.cli.common import add_config_options, config_from
from bms.errors import ConfigError
from bms.plant.pack import Pack
from bms.sim.emulator import parse_nodes

__all__ = ["LOAD_DESIGN_LIMIT", "add_subparser"]

# the design limit of the bus load: the matrix of a 200-cell pack at 500 kbit/s stays below
LOAD_DESIGN_LIMIT = 0.40


def add_subparser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dbc",
        help="check or list a DBC binding",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=("check", "dump"))
    p.add_argument(
        "binding", nargs="?", help="binding TOML (default: the built-in dbc/binding.toml)"
    )
    add_config_options(p)
    p.add_argument(
        "--nodes",
        default="all",
        help="nodes that run here, whose inputs must be carried (default: every node the "
        "binding maps in [nodes])",
    )
    p.add_argument(
        "--bitrate",
        type=int,
        help="bit/s for the bus load (default: the [can] bitrate of --config, else python-can's "
        "configuration, else 500000)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.bitrate is not None and args.bitrate <= 0:
        raise ConfigError(f"must be > 0, got {args.bitrate}", field="--bitrate")
    cfg = config_from(args)
    # as `bms-emu run` takes it: the option, [can], python-can's configuration, 500000
    bitrate = args.bitrate or cfg.can.bitrate or BusSpec().bitrate
    pack = Pack(cfg)
    sizes = {
        "cell_voltage_v": cfg.pack.series,
        "temp_c": pack.sensors.n_temp_sensors,
        "bleed": cfg.pack.series,
    }
    roles = parse_nodes(args.nodes) if args.nodes != "all" else None
    b = load_binding(args.binding, sizes, roles)
    frames, bits = matrix_load(b)
    if args.action == "dump":
        for line in describe(b):
            print(line)
    for w in b.warnings:
        print(f"warning: {w}")
    load = bits / bitrate
    load_at = (
        f"bus load {load:.1%} at {bitrate} bit/s (worst-case stuffing, {cfg.pack.series} groups)"
    )
    todo = "use a higher --bitrate or longer message periods in the DBC"
    if load > 1.0:
        raise ConfigError(
            f"{load_at}: the matrix does not fit on the bus; {todo}", source=str(b.path)
        )
    if load > LOAD_DESIGN_LIMIT:
        print(
            f"warning: {load_at} is above the {LOAD_DESIGN_LIMIT:.0%} design limit; {todo}",
            file=sys.stderr,
        )
    print(
        f"ok: {b.path}: {len(b.messages)} messages from {len(b.dbc_files)} DBC files bound for "
        f"{cfg.pack.series} groups and {sizes['temp_c']} temperature sensors; "
        f"{frames:,.0f} frames/s, bus load {load:.1%} at {bitrate} bit/s "
        "(worst-case stuffing)"
    )
    return 0
