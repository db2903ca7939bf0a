"""Open a python-can bus from configuration, with one clear line when it cannot be.

Any python-can interface works by name (virtual, socketcan, slcan, gs_usb,
pcan, kvaser, socketcand, ...), with its channel, bitrate and extra keyword
arguments.

Each setting is taken, first found: from the command line (``BusSpec``'s
fields, ``--bus-kwarg``); from python-can's own configuration, as
``can.util.load_config()`` resolves it (``can.rc``, the ``CAN_INTERFACE``/
``CAN_CHANNEL``/``CAN_BITRATE``/``CAN_CONFIG`` environment, ``~/.canrc`` and
the other files python-can reads), including its extra keys (``fd``,
``data_bitrate``, ``tty_baudrate``, ``host``/``port``, ...); from the
defaults: the virtual interface, the interface's usual channel, 500 kbit/s.
python-can's configuration applies when it names no interface or the one in
use: one that names another interface (an adapter configured for daily use)
is left out when ``--interface`` names a different one.

Defaults that python-can gets wrong for an emulator are set here: ``slcan``
does not sleep 2 s after opening, ``socketcand`` turns Nagle off.
"""

from __future__ import annotations

import configparser
import contextlib
import errno
import importlib
import json
import logging
import os
import socket
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import can
from can.interfaces.virtual import VirtualBus

from bms.errors import CanLinkError, ConfigError

__all__ = ["DEFAULT_BITRATE", "BusSpec", "open_bus", "rx_pending"]

DEFAULT_CHANNEL = "vcan0"
DEFAULT_BITRATE = 500_000  # bit/s, when neither the command line nor python-can gives one
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


@dataclass(frozen=True, init=False)
class BusSpec:
    """A CAN bus to open. ``None`` is "not given": :meth:`resolved` fills it from
    python-can's configuration, then from the defaults (see the module docstring)."""

    interface: str | None  # None: python-can's configuration, else virtual
    channel: str | int | None
    given_bitrate: int | None  # None: python-can's configuration, else 500 kbit/s
    kwargs: dict[str, Any]

    def __init__(
        self,
        interface: str | None = None,
        channel: str | int | None = None,
        bitrate: int | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        object.__setattr__(self, "interface", interface)
        object.__setattr__(self, "channel", channel)
        object.__setattr__(self, "given_bitrate", bitrate)
        object.__setattr__(self, "kwargs", dict(kwargs or {}))

    @property
    def bitrate(self) -> int:
        """The bit rate in bit/s: as given, else python-can's configuration, else 500000."""
        if self.given_bitrate is not None:
            return self.given_bitrate
        resolved = self.resolved().given_bitrate
        assert resolved is not None
        return resolved

    def resolved(self) -> BusSpec:
        """Fill what the user left out from python-can's configuration, then defaults.
        Raises ConfigError (one line, naming the source) for a configuration that is wrong."""
        configured = _configured_interface()
        interface = self.interface or configured or "virtual"
        if self.interface is None and interface not in can.interfaces.VALID_INTERFACES:
            valid = ", ".join(sorted(can.interfaces.VALID_INTERFACES))
            raise ConfigError(
                f"unknown CAN interface {interface!r}; python-can knows: {valid}",
                source=f"python-can configuration ({_origin('interface')})",
                field="interface",
            )
        cfg: dict[str, Any] = {}
        if configured in (None, interface) and interface in can.interfaces.VALID_INTERFACES:
            given: dict[str, Any] = {"interface": interface}
            if self.channel is not None:
                given["channel"] = self.channel
            if self.given_bitrate is not None:
                given["bitrate"] = self.given_bitrate
            cfg = _load_python_can_config(given)
        channel = self.channel if self.channel is not None else cfg.get("channel")
        if channel is None:
            channel = _DEFAULT_CHANNELS.get(interface)
        bitrate = self.given_bitrate
        if bitrate is None:
            bitrate = _config_bitrate(cfg)
        kwargs = dict(self.kwargs)  # --bus-kwarg wins over python-can's configuration
        for key, value in cfg.items():
            if key not in _NOT_BUS_KEYS:
                kwargs.setdefault(key, value)
        if interface == "socketcand":  # the defaults of `bms-emu hub`
            kwargs.setdefault("host", "127.0.0.1")
            kwargs.setdefault("port", 29536)
        return BusSpec(interface, channel, bitrate, kwargs)

    def describe(self) -> str:
        kw = "".join(f" {k}={v}" for k, v in self.kwargs.items())
        return f"{self.interface} {self.channel or '(default channel)'} {self.bitrate} bit/s{kw}"


# keys of python-can's configuration that are not keyword arguments of the bus
# (BusSpec's own fields, and can.Bus's parameters)
_NOT_BUS_KEYS = frozenset(
    ("interface", "bustype", "channel", "bitrate", "config_context", "context", "ignore_config")
)
_ENV_KEYS = {"interface": "CAN_INTERFACE", "channel": "CAN_CHANNEL", "bitrate": "CAN_BITRATE"}


def _configured_interface() -> str | None:
    """The interface python-can's configuration names, or None; the sources in the order
    ``can.util.load_config`` reads them (the first that names one wins)."""
    try:
        sources = (
            can.rc,
            can.util.load_environment_config(),
            can.util.load_file_config(),
        )
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON ({exc})", source="python-can configuration", field="CAN_CONFIG"
        ) from None
    except configparser.Error as exc:
        where = getattr(exc, "source", None) or _searched()
        raise ConfigError(_first_line(exc), source=f"python-can configuration ({where})") from None
    for src in sources:
        value = src.get("interface") or src.get("bustype")
        if value:
            return str(value)
    return None


def _load_python_can_config(given: dict[str, Any]) -> dict[str, Any]:
    """``can.util.load_config(config=given)``: the given values win, python-can's
    configuration fills the rest; its errors as one line."""
    try:
        return dict(can.util.load_config(config=dict(given)))
    except (ValueError, TypeError, configparser.Error, can.CanInterfaceNotImplementedError) as exc:
        raise ConfigError(
            _first_line(exc), source=f"python-can configuration ({_searched()})"
        ) from None


def _config_bitrate(cfg: dict[str, Any]) -> int:
    """The bit rate python-can's configuration gives (or its bit timing), else 500000."""
    raw = cfg.get("bitrate")
    if raw is None:
        timing = cfg.get("timing")
        nominal = getattr(timing, "nom_bitrate", None) or getattr(timing, "bitrate", None)
        return int(nominal) if nominal else DEFAULT_BITRATE
    value = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    if value is None or value <= 0:
        raise ConfigError(
            f"must be a whole number of bit/s > 0, got {raw!r}",
            source=f"python-can configuration ({_origin('bitrate')})",
            field="bitrate",
        )
    return value


def _origin(key: str) -> str:
    """Where python-can's configuration takes ``key`` from, for an error message."""
    if key in can.rc:
        return "can.rc"
    env = _ENV_KEYS.get(key)
    if env and os.environ.get(env):
        return env
    with contextlib.suppress(ValueError):
        if key in json.loads(os.environ.get("CAN_CONFIG", "{}")):
            return "CAN_CONFIG"
    for name in reversed(can.util.CONFIG_FILES):  # a later file overrides an earlier one
        path = os.path.expanduser(name)
        parser = configparser.ConfigParser()
        parser.optionxform = lambda optionstr: optionstr  # type: ignore[method-assign]
        with contextlib.suppress(configparser.Error, OSError, UnicodeDecodeError):
            parser.read(path)
            if parser.has_option("default", key):
                return path
    return _searched()


def _searched() -> str:
    files = ", ".join(can.util.CONFIG_FILES)
    return f"can.rc, the CAN_* environment, {files}"


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
        _import_backend_quietly(iface)
        # the spec is resolved: python-can's configuration is in it already, or left out
        return can.Bus(interface=iface, channel=spec.channel, ignore_config=True, **kwargs)
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


def _import_backend_quietly(iface: str) -> None:
    """Import the interface's python-can module with its import-time warnings off (the
    vector one logs "Could not import vxlapi" before the error that says it all)."""
    module = can.interfaces.BACKENDS.get(iface, (None,))[0]
    if module is None or module in sys.modules:
        return
    logger = logging.getLogger("can.interfaces")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        importlib.import_module(module)
    finally:
        logger.setLevel(level)


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
