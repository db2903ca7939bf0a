"""``bms-emu hub``: one virtual CAN bus shared by several processes, over TCP.

For machines without SocketCAN (macOS, Windows, WSL, containers, CI). The hub
speaks the socketcand protocol, so python-can's ``socketcand`` interface and
every tool built on it join unchanged. Start the hub first (python-can's
client retries for 10 s when nothing listens), then, in other terminals:

  bms-emu run --interface socketcand --channel vcan0 \\
      --bus-kwarg host=127.0.0.1 --bus-kwarg port=29536 --speed realtime
  python -m can.logger -i socketcand -c vcan0 -f bus.log \\
      --bus-kwargs host=127.0.0.1 port=29536 tcp_tune=True
  python -m can.viewer -i socketcand -c vcan0 \\
      --bus-kwargs host=127.0.0.1 port=29536 tcp_tune=True

Every frame a client sends reaches every other client on the same channel
name, in one order, time-stamped by the hub. A client that stops reading has
frames dropped for it (counted) once its queue is full; it never holds up the
others. Ctrl-C stops the hub and prints its counters.

The hub listens on 127.0.0.1 only, unless --host names another address; the
bus is then open to the network, with no authentication.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bms.canbus.hub import DEFAULT_PORT, Hub

__all__ = ["add_subparser"]

_LOGGER = "bms.canbus.hub"


def add_subparser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hub",
        help="share one virtual CAN bus between processes (socketcand protocol, loopback)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other opens the bus to the network)",
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})"
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=100_000,
        metavar="N",
        help="messages queued per client before frames for it are dropped (default 100000)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="log warnings only, not connects and disconnects"
    )
    p.set_defaults(func=run)


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return text


def run(args: argparse.Namespace) -> int:
    log = logging.getLogger(_LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    log.propagate, old_propagate = False, log.propagate
    try:
        return _serve(args)
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate


def _serve(args: argparse.Namespace) -> int:
    hub = Hub(args.host, args.port, max_queue=args.max_queue)
    hub.start()  # CanLinkError (port in use, ...) -> "error: ..." from bms.cli.main
    interrupted = False
    try:
        host, port = hub.address
        shown = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
        print(f"hub on {host}:{port} (socketcand protocol)", flush=True)
        print(
            f"connect with python-can: interface=socketcand host={shown} port={port} "
            "channel=vcan0 tcp_tune=True",
            flush=True,
        )
        hub.serve_forever()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        hub.stop()
    print(f"hub stopped: {hub.stats}", flush=True)
    return 130 if interrupted else 0
