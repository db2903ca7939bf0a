"""``bms-emu``: the entry point. Errors print one line; ``--debug`` shows the traceback."""

from __future__ import annotations

import argparse
import sys

from bms import __version__
from bms.cli import adapter, dbc, hub, plant, run
from bms.errors import BmsError

SUBCOMMANDS = (run, dbc, adapter, hub, plant)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bms-emu",
        description="BMS firmware-in-the-loop emulator: an LFP pack plant, the BMS "
        "firmware, a vehicle and a charger on a CAN bus defined by DBC files.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in SUBCOMMANDS:
        module.add_subparser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BmsError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
