"""Open a python-can bus from configuration, with one clear line when it cannot be.

Any python-can interface works by name (virtual, socketcan, slcan, gs_usb,
pcan, kvaser, socketcand, ...), with its channel, bitrate and extra keyword
arguments. Without an interface, python-can's own configuration is used
(``CAN_INTERFACE``/``CAN_CHANNEL``/``CAN_BITRATE`` in the environment, or
``can.rc``/``~/.canrc``), and the virtual bus when that names none either.

Defaults that python-can gets wrong for an emulator are set here: ``slcan``
does not sleep 2 s after opening, ``socketcand`` turns Nagle off.
"""

from __future__ import annotations

import errno
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import can
from can.interfaces.virtual import VirtualBus

from bms.errors import CanLinkError

__all__ = ["BusSpec", "open_bus", "rx_pending"]

DEFAULT_CHANNEL = "vcan0"
# what a user most likely means when an interface is named without a channel
_DEFAULT_CHANNELS: dict[str, str | int] = {
    "virtual": DEFAULT_CHANNEL,
    "socketcan": DEFAULT_CHANNEL,
    "socketcand": DEFAULT_CHANNEL,
    "pcan": "PCAN_USBBUS1",
    "kvaser": 0,
    "vector": 0,
}
_DRIVER_HINTS = {
    "pcan": "install PEAK's PCAN-Basic driver (libpcanbasic on Linux)",
    "kvaser": "install Kvaser's CANlib (linuxcan on Linux)",
    "gs_usb": "pip install pyusb, and libusb for your system",
    "vector": "install Vector's XL driver library (Windows)",
    "ixxat": "install the IXXAT VCI driver (Windows)",
}


@dataclass(frozen=True)
class BusSpec:
    interface: str | None = None  # None: python-can's configuration, else virtual
    channel: str | int | None = None
    bitrate: int = 500_000
    kwargs: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> BusSpec:
        """Fill what the user left out from python-can's configuration, then defaults."""
        interface, channel = self.interface, self.channel
        if interface is None:
            cfg: dict[str, Any] = {}
            try:
                cfg = dict(can.util.load_config())
            except (can.CanInterfaceNotImplementedError, ValueError, KeyError):
                pass
            interface = cfg.get("interface") or "virtual"
            if channel is None:
                channel = cfg.get("channel")
        kwargs = dict(self.kwargs)
        if channel is None:
            channel = _DEFAULT_CHANNELS.get(interface)
        if interface == "socketcand":  # the defaults of `bms-emu hub`
            kwargs.setdefault("host", "127.0.0.1")
            kwargs.setdefault("port", 29536)
        return BusSpec(interface, channel, self.bitrate, kwargs)

    def describe(self) -> str:
        kw = "".join(f" {k}={v}" for k, v in self.kwargs.items())
        return f"{self.interface} {self.channel or '(default channel)'} {self.bitrate} bit/s{kw}"


def open_bus(spec: BusSpec) -> can.BusABC:
    """Open the bus ``spec`` names; raises CanLinkError with one line that says what to do."""
    spec = spec.resolved()
    iface = str(spec.interface)
    if iface not in can.interfaces.VALID_INTERFACES:
        valid = ", ".join(sorted(can.interfaces.VALID_INTERFACES))
        raise CanLinkError(f"unknown CAN interface {iface!r}; python-can knows: {valid}")
    if iface == "udp_multicast":
        raise CanLinkError(
            "interface udp_multicast sends to the network; use virtual, the hub (bms-emu hub) "
            "or socketcan instead"
        )
    kwargs: dict[str, Any] = dict(spec.kwargs)
    if iface == "slcan":
        kwargs.setdefault("sleep_after_open", 0)
    if iface == "socketcand":
        kwargs.setdefault("tcp_tune", True)
    if iface == "virtual":
        kwargs.setdefault("receive_own_messages", False)
    if iface not in ("virtual", "socketcan", "socketcand"):
        kwargs.setdefault("bitrate", spec.bitrate)
    where = f"{iface} channel {spec.channel!r}"
    if iface == "socketcand":
        _probe_server(str(kwargs.get("host")), int(kwargs.get("port", 29536)))
    try:
        return can.Bus(interface=iface, channel=spec.channel, **kwargs)
    except (can.CanInterfaceNotImplementedError, ImportError) as exc:
        hint = _DRIVER_HINTS.get(iface, "install the adapter's driver or library")
        raise CanLinkError(
            f"{iface}: driver not available ({_first_line(exc)}); {hint}, or use another "
            "--interface"
        ) from None
    except (can.CanInitializationError, OSError) as exc:
        text = _hint(exc, spec)
        low = text.lower()
        if "library not found" in low or ".dll" in low or "could not load" in low:
            hint = _DRIVER_HINTS.get(iface, "install the adapter's driver or library")
            raise CanLinkError(f"{iface}: driver not available ({text}); {hint}") from None
        raise CanLinkError(f"cannot open {where}: {text}") from None
    except (NameError, AttributeError) as exc:  # a vendor library that did not load
        hint = _DRIVER_HINTS.get(iface, "install the adapter's driver or library")
        raise CanLinkError(f"{iface}: driver not available ({_first_line(exc)}); {hint}") from None
    except TypeError as exc:
        text = _first_line(exc)
        if "required" in text and "argument" in text:
            missing = text.split("argument", 1)[-1].strip(": ")
            raise CanLinkError(
                f"interface {iface} needs more settings: {missing}; give --channel and "
                "--bus-kwarg KEY=VALUE"
            ) from None
        raise CanLinkError(f"cannot open {where}: {text}") from None
    except ValueError as exc:
        raise CanLinkError(f"cannot open {where}: {_first_line(exc)}") from None


def rx_pending(bus: can.BusABC) -> Callable[[], int]:
    """A cheap test whether ``bus`` may hold received frames, for a caller that polls it
    often (the emulator in virtual time, every 10 ms of simulated time). python-can's
    ``virtual`` bus keeps them in its ``queue``: it is looked at without a lock (a
    ``recv(0)`` on an empty one costs microseconds: a lock, a timed wait, an exception).
    Any other bus: always true (poll with ``recv(0)``)."""
    pending = getattr(getattr(bus, "queue", None), "queue", None)  # the Queue's deque
    if isinstance(bus, VirtualBus) and isinstance(pending, deque):
        return pending.__len__
    return _always


def _always() -> bool:
    return True


def _probe_server(host: str, port: int) -> None:
    """python-can's socketcand client retries for 10 s when nobody listens; ask first."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            pass
    except OSError as exc:
        raise CanLinkError(
            f"no socketcand server at {host}:{port} ({exc.strerror or exc}); start one with "
            "`bms-emu hub` or give --bus-kwarg host=... --bus-kwarg port=..."
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _hint(exc: BaseException, spec: BusSpec) -> str:
    text = _first_line(exc)
    cause: BaseException | None = exc
    codes = set()
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno is not None:
            codes.add(cause.errno)
        cause = cause.__cause__ or cause.__context__
    low = text.lower()
    if errno.EACCES in codes or "permission denied" in low:
        return (
            f"{text} (permission denied: add yourself to the dialout group, "
            "`sudo usermod -aG dialout $USER`, and log in again)"
        )
    if errno.EAFNOSUPPORT in codes or "address family not supported" in low:
        return (
            f"{text} (this kernel has no SocketCAN; use --interface virtual, or the "
            "bms-emu hub with --interface socketcand)"
        )
    if errno.ENODEV in codes or "no such device" in low:
        return f"{text} (no such CAN device; create a virtual one with `make vcan`)"
    if errno.ENOENT in codes or "no such file" in low or "could not open port" in low:
        return f"{text} (no such port; check the adapter is plugged in and the path)"
    return text
