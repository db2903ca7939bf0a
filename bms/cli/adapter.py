"""``bms-emu adapter``: a virtual SLCAN (Lawicel) USB-CAN adapter on a pseudo-terminal.

Opens the bus named by --interface/--channel/--bitrate and bridges it to a
pty that answers as an SLCAN adapter (CANable, Lawicel CANUSB). The first
line on stdout names the tty; open it wherever /dev/ttyACM0 would go:

    bms-emu adapter --interface socketcan --channel vcan0 --link /tmp/ttyBMS
    slcan adapter on /dev/pts/7
    cantools monitor -i slcan -c /tmp/ttyBMS -B 500000 dbc/bms_vehicle.dbc
    bms-emu run --nodes pack,vcu,charger --interface slcan --channel /tmp/ttyBMS

A python-can virtual bus exists only inside one process: from the command
line bridge to something other processes share (socketcan vcan0, the
socketcand hub on 127.0.0.1). In Python, hand the device its own bus
instance on the emulator's virtual channel: SlcanDevice(bus).

Runs until Ctrl-C (exit status 130) or --duration (0), then prints the
adapter's counters.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bms.canbus.bus import open_bus
from bms.canbus.slcan_device import SlcanDevice, SlcanStats
from bms.cli.common import add_bus_options, bus_spec
from bms.errors import ConfigError

__all__ = ["adapter", "add_subparser", "stats_text"]


def add_subparser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adapter",
        help="a virtual SLCAN USB-CAN adapter (a pty) bridged to a CAN bus",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bus_options(p, "socketcand, socketcan, virtual")
    p.add_argument(
        "--link",
        metavar="PATH",
        help="also make PATH a symlink to the tty (a fixed name for scripts); "
        "an existing symlink there is replaced",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=10_000,
        metavar="N",
        help="frames held for a host that reads slowly, then dropped (default 10000)",
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.set_defaults(func=adapter)


def adapter(args: argparse.Namespace) -> int:
    if args.max_queue < 1:
        raise ConfigError(f"must be >= 1, got {args.max_queue}", field="--max-queue")
    if args.duration is not None and not args.duration > 0:
        raise ConfigError(f"must be > 0 s, got {args.duration}", field="--duration")
    link = args.link
    if link and os.path.lexists(link) and not os.path.islink(link):
        raise ConfigError(f"{link} exists and is not a symlink", field="--link")
    spec = bus_spec(args)
    bus = open_bus(spec)
    interrupted = False
    try:
        with SlcanDevice(bus, max_queue=args.max_queue) as dev:
            if link:
                _make_link(dev.tty_path, link)
            try:
                print(f"slcan adapter on {dev.tty_path}", flush=True)
                resolved = spec.resolved()
                print(f"  bridged to {resolved.describe()}", file=sys.stderr, flush=True)
                if resolved.interface == "virtual":
                    print(
                        "  note: a virtual bus is private to this process; bridge other "
                        "processes through socketcan or socketcand",
                        file=sys.stderr,
                        flush=True,
                    )
                interrupted = _wait(args.duration)
            finally:
                if link:
                    _remove_link(dev.tty_path, link)
        print(stats_text(dev.stats), flush=True)
    finally:
        bus.shutdown()
    return 130 if interrupted else 0


def stats_text(s: SlcanStats) -> str:
    return (
        f"  frames        {s.frames_to_host:,} to the host, {s.frames_from_host:,} from the host, "
        f"{s.dropped_to_host:,} dropped (host not reading)\n"
        f"  host lines    {s.bad_lines:,} malformed, {s.refused:,} refused, "
        f"{s.replies_dropped:,} replies dropped\n"
        f"  connections   {s.connections:,}, {s.errors:,} errors"
    )


def _wait(duration_s: float | None) -> bool:
    """Sleep until Ctrl-C (True) or the end of ``duration_s`` (False)."""
    end = None if duration_s is None else time.monotonic() + duration_s
    try:
        while True:
            left = 0.5 if end is None else min(0.5, end - time.monotonic())
            if left <= 0:
                return False
            time.sleep(left)
    except KeyboardInterrupt:
        return True


def _make_link(target: str, link: str) -> None:
    try:
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(target, link)
    except OSError as exc:
        raise ConfigError(
            f"cannot link {link} to {target}: {exc.strerror}", field="--link"
        ) from None


def _remove_link(target: str, link: str) -> None:
    try:
        if os.path.islink(link) and os.readlink(link) == target:
            os.unlink(link)
    except OSError:
        pass
