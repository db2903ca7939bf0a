"""``bms-emu dbc check`` and ``bms-emu dbc dump``: a DBC binding, checked or listed.

``check`` loads the DBC files a binding names and checks the binding against
them for the given pack (every problem listed at once; exit 2 when any) and
prints the bus load its periods give. ``dump`` lists every bound message:
identifier, period, sender and receivers, and which signal carries which value.
"""

from __future__ import annotations

import argparse

from bms.canbus.binding import describe, load_binding
from bms.canbus.link import matrix_load
from bms.canbus.vocab import ROLES
from bms.cli.common import add_config_options, config_from
from bms.plant.pack import Pack
from bms.sim.emulator import parse_nodes

__all__ = ["add_subparser"]


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
    p.add_argument("--nodes", default="all", help="nodes that run here (default all)")
    p.add_argument("--bitrate", type=int, default=500_000, help="bit/s for the bus load")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    pack = Pack(cfg)
    sizes = {
        "cell_voltage_v": cfg.pack.series,
        "temp_c": pack.sensors.n_temp_sensors,
        "bleed": cfg.pack.series,
    }
    roles = parse_nodes(args.nodes) if args.nodes != "all" else ROLES
    b = load_binding(args.binding, sizes, roles)
    frames, bits = matrix_load(b)
    if args.action == "dump":
        for line in describe(b):
            print(line)
    for w in b.warnings:
        print(f"warning: {w}")
    print(
        f"ok: {b.path}: {len(b.messages)} messages from {len(b.dbc_files)} DBC files bound for "
        f"{cfg.pack.series} groups and {sizes['temp_c']} temperature sensors; "
        f"{frames:,.0f} frames/s, bus load {bits / args.bitrate:.1%} at {args.bitrate} bit/s "
        "(worst-case stuffing)"
    )
    return 0
