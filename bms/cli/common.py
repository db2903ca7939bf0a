"""Options several subcommands share: the configuration and the CAN bus."""

from __future__ import annotations

import argparse
import dataclasses

from bms.canbus.bus import BusSpec
from bms.config import Config, load_config, preset
from bms.errors import ConfigError

__all__ = ["add_bus_options", "add_config_options", "bus_kwargs", "bus_spec", "config_from"]


def add_config_options(
    p: argparse.ArgumentParser, presets: str = "bus (default), container"
) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", metavar="TOML", help="configuration file")
    src.add_argument("--preset", metavar="NAME", help=f"built-in configuration: {presets}")


def config_from(args: argparse.Namespace) -> Config:
    """The configuration named by --config/--preset (the bus pack by default); --seed, when
    the subcommand has it, reseeds the pack's spread and the sensors."""
    if args.config:
        cfg = load_config(args.config)
    elif args.preset:
        cfg = preset(args.preset)
    else:
        cfg = Config()
    seed = getattr(args, "seed", None)
    if seed is not None:
        cfg = dataclasses.replace(
            cfg,
            pack=dataclasses.replace(cfg.pack, seed=seed),
            sensors=dataclasses.replace(cfg.sensors, seed=seed + 1),
        )
    return cfg


def add_bus_options(
    p: argparse.ArgumentParser, examples: str = "virtual, socketcan, slcan"
) -> None:
    p.add_argument("--interface", help=f"python-can interface: {examples}, ...")
    p.add_argument("--channel", help="channel of the interface (vcan0, /dev/ttyACM0, ...)")
    p.add_argument(
        "--bitrate",
        type=int,
        default=None,
        help="bit/s (default: python-can's configuration, else 500000)",
    )
    p.add_argument(
        "--bus-kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword for the python-can bus (repeatable)",
    )


def bus_kwargs(items: list[str]) -> dict[str, object]:
    """``["port=29536", "tcp_tune=true"]`` -> ``{"port": 29536, "tcp_tune": True}``."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", field="--bus-kwarg")
        v: object = value
        for conv in (int, float):
            try:
                v = conv(value)
                break
            except ValueError:
                continue
        if value.lower() in ("true", "false"):
            v = value.lower() == "true"
        out[key.strip()] = v
    return out


def bus_spec(args: argparse.Namespace, cfg: Config | None = None) -> BusSpec:
    """The bus the options name; what they leave out comes from the configuration's
    ``[can]`` section (``cfg``), then, when the spec is resolved, from python-can's
    configuration and the defaults. ``[can]`` applies when it names no interface or the
    one the options name (a section for another interface is left out whole)."""
    if args.bitrate is not None and args.bitrate <= 0:
        raise ConfigError(f"must be > 0, got {args.bitrate}", field="--bitrate")
    interface, channel, bitrate = args.interface, args.channel, args.bitrate
    kwargs: dict[str, object] = {}
    can_cfg = cfg.can if cfg is not None else None
    if can_cfg is not None and (not can_cfg.interface or interface in (None, can_cfg.interface)):
        interface = interface or can_cfg.interface or None
        channel = channel if channel is not None else (can_cfg.channel or None)
        bitrate = bitrate if bitrate is not None else (can_cfg.bitrate or None)
        kwargs.update(can_cfg.options)
    kwargs.update(bus_kwargs(args.bus_kwarg))  # --bus-kwarg wins
    return BusSpec(interface, channel, bitrate, kwargs)
