"""The signal binding: which DBC signal carries which node value, checked at start-up.

A binding file (TOML) names the DBC files and, per message, which value
(:mod:`bms.canbus.vocab`) each signal carries; identifiers, bit layouts,
scaling and periods are read from the DBC through cantools, never written
here. ``load_binding`` checks everything before the bus goes live and raises
one :class:`~bms.errors.BindingError` listing every problem: a missing
message or signal, a transmitted signal nobody fills, an unknown value name,
a unit that does not fit, a label missing from a value table, a node input
that no message carries, a page that cannot hold the pack.

File format::

    dbc = ["bms_vehicle.dbc", "bms_pack.dbc"]     # relative to the binding file
    crc_algorithm = "crc8_sae_j1850"               # default for every message

    [nodes]                       # the DBC nodes each emulator node plays
    bms = ["BMS"]
    pack = ["CMU", "PDU"]

    [message.BMS_PackData]
    counter = "AliveCounter"      # alive counter: +1 per frame, checked on receipt
    crc = "Crc"                   # one whole byte: CRC over the payload's other bytes
    unused = ["Spare"]            # transmitted signals deliberately left at their initial value
    # sender = "bms"; receivers = ["vcu"]   # override the DBC's sender / receivers
    [message.BMS_PackData.signals]
    PackVoltage = "pack_voltage_v"

    [message.CMU_CellVoltages]    # an array in pages
    page = "CellVoltagesPage"     # page p carries elements p*k .. p*k+k-1
    array = "cell_voltage_v"
    elements = ["CellVoltage1", "CellVoltage2", "CellVoltage3"]
    pages = "burst"               # all pages at once (default "spread": evenly over the period)

For a message multiplexed in the DBC (``M``/``m<k>`` signals) leave out
``page``: ``elements`` may then list signals of different multiplexer values,
numbered in the order given, and each multiplexer value is sent as its own frame.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cantools
import cantools.database

from bms.canbus.codec import MessageCodec
from bms.canbus.crc import CRC8
from bms.canbus.vocab import NODE_INPUTS, NODE_OUTPUTS, ROLES, VALUES, unit_factor
from bms.errors import BindingError, ConfigError

__all__ = [
    "DBC_DIR",
    "DEFAULT_BINDING",
    "Binding",
    "BoundMessage",
    "Page",
    "Slot",
    "load_binding",
]


def _find_dbc_dir() -> Path:
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "dbc", Path(__import__("sys").prefix) / "share/bms-emu/dbc"):
        if (cand / "binding.toml").is_file():
            return cand
    return here.parents[2] / "dbc"


DBC_DIR = _find_dbc_dir()
DEFAULT_BINDING = DBC_DIR / "binding.toml"


def _norm(label: str) -> str:
    return re.sub(r"[\s_\-]", "", label).lower()


@dataclass
class Slot:
    """One signal bound to one value (or one element of an array value)."""

    signal: str
    value: str
    kind: str
    factor: float = 1.0  # value unit -> signal unit
    index: int = -1  # element of an array value, -1 for a scalar
    to_raw: dict[str, int] = field(default_factory=dict)  # enum label -> raw
    to_label: dict[int, str] = field(default_factory=dict)  # raw -> enum label


@dataclass
class Page:
    """One frame's worth of a message: fixed signals (page number, multiplexer) and slots."""

    fixed: dict[str, int]
    slots: list[Slot]


@dataclass
class BoundMessage:
    """A DBC message with its binding: what fills it, who sends and who receives it."""

    name: str
    codec: MessageCodec
    sender: str
    receivers: tuple[str, ...]
    period_s: float | None
    pages: list[Page]
    counter: str | None = None
    counter_mod: int = 0
    crc: str | None = None
    crc_byte: int = -1
    crc_algorithm: str = "crc8_sae_j1850"
    spread: bool = True
    array: str | None = None  # name of the array value carried in pages
    page_signal: str | None = None  # page-index signal (None: DBC multiplexing or no pages)
    per_page: int = 0

    @property
    def frame_id(self) -> int:
        return self.codec.frame_id

    @property
    def is_extended(self) -> bool:
        return self.codec.is_extended

    @property
    def key(self) -> tuple[int, bool]:
        return (self.codec.frame_id, self.codec.is_extended)

    def values(self) -> set[str]:
        return {s.value for p in self.pages for s in p.slots}


@dataclass
class Binding:
    """Every bound message, and every message the DBC files know (for receive checks)."""

    path: Path
    dbc_files: list[Path]
    messages: dict[str, BoundMessage]
    known: dict[tuple[int, bool], cantools.database.can.Message]
    nodes: dict[str, tuple[str, ...]]  # role -> DBC node names
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_key = {m.key: m for m in self.messages.values()}

    def sent_by(self, role: str) -> list[BoundMessage]:
        return [m for m in self.messages.values() if m.sender == role]

    def received_by(self, role: str) -> list[BoundMessage]:
        return [m for m in self.messages.values() if role in m.receivers]


def _load_dbcs(files: list[Path], problems: list[str]) -> cantools.database.can.Database:
    db = cantools.database.can.Database()
    for f in files:
        if not f.is_file():
            problems.append(f"DBC file {f} does not exist")
            continue
        try:
            db.add_dbc_file(str(f))
        except Exception as exc:  # cantools raises several kinds; name the file
            problems.append(f"DBC file {f}: cannot be parsed ({str(exc).splitlines()[0]})")
    return db


def _table(doc: dict[str, Any], key: str, where: str, problems: list[str]) -> dict[str, Any]:
    """``doc[key]`` when it is a TOML table; a listed problem (and {}) when it is not."""
    value = doc.get(key, {})
    if isinstance(value, dict):
        return value
    problems.append(f"{where}: must be a table, got {value!r}")
    return {}


def _as_list(x: Any, where: str, problems: list[str]) -> list[str]:
    if isinstance(x, str):
        return [x]
    if isinstance(x, list) and all(isinstance(i, str) for i in x):
        return x
    problems.append(f"{where}: must be a name or a list of names")
    return []


def load_binding(
    path: str | Path | None = None,
    sizes: dict[str, int] | None = None,
    roles: Iterable[str] | None = ROLES,
    dbc: Iterable[str | Path] | None = None,
) -> Binding:
    """Load and check a binding (the built-in one by default) for arrays of ``sizes``
    (``cell_voltage_v``, ``temp_c``, ``bleed``: elements each); ``roles`` are the
    nodes that run here, whose inputs must all be carried (None: the nodes the binding
    maps in ``[nodes]``). ``dbc`` replaces the DBC files the binding names (a newer
    release of the same matrix, say)."""
    path = Path(path) if path is not None else DEFAULT_BINDING
    src = str(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("binding file not found", source=src) from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the binding: {exc}", source=src) from None
    sizes = dict(sizes or {})
    problems: list[str] = []
    warnings: list[str] = []
    unknown_keys = set(doc) - {"dbc", "nodes", "message", "crc_algorithm"}
    for k in sorted(unknown_keys):
        problems.append(f"unknown key {k!r} (valid: dbc, nodes, crc_algorithm, message)")
    if dbc is not None:
        files = [Path(f).resolve() for f in dbc]
    else:
        names = _as_list(doc.get("dbc", []), "dbc", problems)
        files = [(path.parent / f).resolve() for f in names]
    if not files:
        problems.append("dbc: names no DBC file")
    db = _load_dbcs(files, problems)
    default_crc = doc.get("crc_algorithm", "crc8_sae_j1850")
    if default_crc not in CRC8:
        problems.append(f"crc_algorithm: unknown {default_crc!r} (valid: {', '.join(CRC8)})")

    nodes: dict[str, tuple[str, ...]] = {}
    dbc_to_role: dict[str, str] = {}
    for role, names in _table(doc, "nodes", "[nodes]", problems).items():
        if role not in ROLES:
            problems.append(f"[nodes] {role}: unknown node (valid: {', '.join(ROLES)})")
            continue
        nodes[role] = tuple(_as_list(names, f"[nodes] {role}", problems))
        for n in nodes[role]:
            dbc_to_role[n] = role

    bound: dict[str, BoundMessage] = {}
    broken: set[str] = set()  # values of messages that could not be bound
    for name, spec in _table(doc, "message", "[message]", problems).items():
        where = f"[message.{name}]"
        if not isinstance(spec, dict):
            problems.append(f"{where}: must be a table of settings, got {spec!r}")
            continue
        try:
            msg = db.get_message_by_name(name)
        except KeyError:
            problems.append(f"{where}: no message {name!r} in the DBC files")
            continue
        bm = _bind_message(msg, spec, where, dbc_to_role, default_crc, sizes, problems, warnings)
        if bm is not None:
            bound[name] = bm
        else:  # its own problems are listed: what it would carry is not missing as well
            broken |= _declared_values(spec)

    roles = tuple(nodes) if roles is None else tuple(roles)
    for role in roles:
        carried = {v for m in bound.values() if role in m.receivers for v in m.values()}
        for need in sorted(NODE_INPUTS.get(role, ())):
            if need not in carried and need not in broken:
                problems.append(f"node {role}: no bound message carries its input {need!r}")
    seen: dict[tuple[str, str], str] = {}
    for m in bound.values():
        for role in m.receivers:
            for v in m.values():
                other = seen.setdefault((role, v), m.name)
                if other != m.name:
                    problems.append(f"node {role}: gets {v!r} from both {other} and {m.name}")
    if problems:
        raise BindingError(src, problems)
    known = {(m.frame_id, m.is_extended_frame): m for m in db.messages}
    return Binding(path, files, bound, known, nodes, warnings)


def _declared_values(spec: dict[str, Any]) -> set[str]:
    """The value names a message's settings bind (its signals' values and its array)."""
    signals = spec.get("signals")
    names = set(signals.values()) if isinstance(signals, dict) else set()
    names.add(spec.get("array"))
    return {v for v in names if isinstance(v, str)}


def _bind_message(
    msg: cantools.database.can.Message,
    spec: dict[str, Any],
    where: str,
    dbc_to_role: dict[str, str],
    default_crc: str,
    sizes: dict[str, int],
    problems: list[str],
    warnings: list[str],
) -> BoundMessage | None:
    n0 = len(problems)
    allowed = {
        "signals",
        "counter",
        "crc",
        "crc_algorithm",
        "unused",
        "sender",
        "receivers",
        "page",
        "array",
        "elements",
        "pages",
    }
    for k in sorted(set(spec) - allowed):
        problems.append(f"{where}: unknown key {k!r} (valid: {', '.join(sorted(allowed))})")
    sigs = {s.name: s for s in msg.signals}

    def signal(name: str) -> cantools.database.can.Signal | None:
        if name not in sigs:
            problems.append(f"{where}: no signal {name!r} in message {msg.name}")
            return None
        return sigs[name]

    # who sends, who receives
    if "sender" in spec:
        sender = str(spec["sender"])
    else:
        roles = {dbc_to_role[s] for s in msg.senders if s in dbc_to_role}
        sender = roles.pop() if len(roles) == 1 else ""
    if sender not in ROLES:
        problems.append(
            f"{where}: sender {sender or msg.senders!r} is not one of the emulator's nodes; "
            f"map its DBC node in [nodes] or set sender = one of {', '.join(ROLES)}"
        )
        return None
    if "receivers" in spec:
        receivers = tuple(_as_list(spec["receivers"], f"{where} receivers", problems))
    else:
        rx = {r for s in msg.signals for r in s.receivers}
        receivers = tuple(sorted({dbc_to_role[r] for r in rx if r in dbc_to_role} - {sender}))
    for r in receivers:
        if r not in ROLES:
            problems.append(f"{where}: unknown receiver {r!r} (valid: {', '.join(ROLES)})")

    codec = MessageCodec(msg)
    special: set[str] = set()
    for key in ("counter", "crc", "page", "array", "sender", "crc_algorithm"):
        if key in spec and not isinstance(spec[key], str):
            problems.append(f"{where}: {key} must be a name (a string), got {spec[key]!r}")
            return None

    def in_every_frame(what: str, s: cantools.database.can.Signal) -> None:
        if s.multiplexer_signal is not None:
            pages = ", ".join(map(str, s.multiplexer_ids or ()))
            problems.append(
                f"{where}: {what} {s.name!r} is multiplexed (only in the frames of"
                f" {s.multiplexer_signal} = {pages}); it must be in every frame"
            )

    counter = spec.get("counter")
    counter_mod = 0
    if counter is not None:
        s = signal(counter)
        if s is not None:
            special.add(counter)
            counter_mod = 1 << s.length
            in_every_frame("alive counter", s)
    crc = spec.get("crc")
    crc_byte = -1
    crc_alg = spec.get("crc_algorithm", default_crc)
    if crc is not None:
        s = signal(crc)
        if s is not None:
            special.add(crc)
            in_every_frame("CRC", s)
            lo = min(codec_bits(s))
            if s.length != 8 or lo % 8 != 0 or s.is_signed or s.scale != 1 or s.offset != 0:
                problems.append(
                    f"{where}: CRC signal {crc!r} must be one whole byte, unsigned, unscaled"
                )
            else:
                crc_byte = lo // 8
        if crc_alg not in CRC8:
            problems.append(
                f"{where}: unknown crc_algorithm {crc_alg!r} (valid: {', '.join(CRC8)})"
            )
    unused = set(_as_list(spec.get("unused", []), f"{where} unused", problems))
    for u in unused:
        signal(u)

    outputs = NODE_OUTPUTS[sender]

    def make_slot(sig_name: str, value: str, index: int = -1) -> Slot | None:
        s = signal(sig_name)
        v = VALUES.get(value)
        if v is None:
            problems.append(f"{where}: {sig_name} = {value!r}: unknown value name")
            return None
        if s is None:
            return None
        if value not in outputs:
            problems.append(f"{where}: {sig_name} = {value!r}: node {sender} does not produce it")
        kind = "flag" if v.kind == "flags" else ("phys" if v.kind == "array" else v.kind)
        slot = Slot(sig_name, value, kind, index=index)
        if kind == "phys":
            f = unit_factor(v.unit, s.unit or "")
            if f is None:
                problems.append(
                    f"{where}: {sig_name}: unit mismatch: the DBC says {s.unit!r}, "
                    f"{value!r} is in {v.unit}"
                )
            else:
                slot.factor = f
            if not s.unit:
                warnings.append(f"{where}: {sig_name} has no unit; taken as {v.unit}")
        elif kind == "enum":
            choices = {_norm(str(label)): int(raw) for raw, label in (s.choices or {}).items()}
            missing = [lb for lb in v.labels if _norm(lb) not in choices]
            if missing:
                problems.append(
                    f"{where}: {sig_name}: the value table lacks {', '.join(missing)} "
                    f"(needed for {value!r})"
                )
            slot.to_raw = {lb: choices[_norm(lb)] for lb in v.labels if _norm(lb) in choices}
            slot.to_label = {raw: lb for lb, raw in slot.to_raw.items()}
        return slot

    scalars: list[Slot] = []
    for sig_name, value in _table(spec, "signals", f"{where} signals", problems).items():
        if not isinstance(value, str):
            problems.append(f"{where}: {sig_name} = {value!r}: must be a value name (a string)")
            continue
        slot = make_slot(sig_name, value)
        if slot is not None:
            if VALUES[slot.value].kind in ("array", "flags"):
                problems.append(
                    f"{where}: {sig_name}: {value!r} is an array; bind it with elements"
                )
            scalars.append(slot)

    array = spec.get("array")
    page_sig = spec.get("page")
    elements = _as_list(spec.get("elements", []), f"{where} elements", problems)
    pages: list[Page] = []
    per_page = 0
    mux = codec.multiplexer
    if array is not None:
        if VALUES.get(array) is None or VALUES[array].kind not in ("array", "flags"):
            problems.append(f"{where}: array {array!r} is not an array value")
        elif not elements:
            problems.append(f"{where}: array {array!r} needs elements = [signal names]")
        n = sizes.get(array, 0)
        if page_sig is not None:
            ps = signal(page_sig)
            per_page = len(elements)
            if ps is not None and per_page:
                special.add(page_sig)
                n_pages = max(1, math.ceil(n / per_page))
                max_page = (1 << ps.length) - 1 if not ps.is_signed else (1 << (ps.length - 1)) - 1
                if n_pages - 1 > max_page:
                    problems.append(
                        f"{where}: {n} elements of {array!r} need {n_pages} pages; "
                        f"{page_sig} holds page numbers up to {max_page}"
                    )
                for p in range(n_pages):
                    slots = [
                        sl
                        for k, e in enumerate(elements)
                        if p * per_page + k < n
                        and (sl := make_slot(e, array, p * per_page + k)) is not None
                    ]
                    pages.append(Page({page_sig: p}, slots + (scalars if p == 0 else [])))
        elif mux is not None:
            by_mux: dict[int, list[Slot]] = {}
            for j, e in enumerate(elements):
                ms = signal(e)
                if ms is None:
                    continue
                ids = list(ms.multiplexer_ids or [])
                if len(ids) != 1:
                    problems.append(f"{where}: element {e!r} must sit on exactly one mux page")
                    continue
                if j < n and (sl := make_slot(e, array, j)) is not None:
                    by_mux.setdefault(ids[0], []).append(sl)
            if len(elements) < n:
                problems.append(
                    f"{where}: the DBC carries {len(elements)} elements of {array!r}, "
                    f"the pack has {n}"
                )
            pages = _mux_pages(by_mux, scalars, sigs, mux)
        else:
            if len(elements) < n:
                problems.append(
                    f"{where}: {len(elements)} elements cannot carry the {n} of {array!r}; "
                    "name a page signal (page = ...)"
                )
            slots = [sl for k, e in enumerate(elements) if k < n and (sl := make_slot(e, array, k))]
            pages = [Page({}, slots + scalars)]
    elif mux is not None:
        by_mux = {}
        rest: list[Slot] = []
        for sl in scalars:
            ids = list(sigs[sl.signal].multiplexer_ids or [])
            if ids:
                for i in ids:
                    by_mux.setdefault(i, []).append(sl)
            else:
                rest.append(sl)
        pages = _mux_pages(by_mux, rest, sigs, mux)
    else:
        pages = [Page({}, scalars)]
    if mux is not None:
        special.add(mux)

    # every transmitted signal must be filled
    covered = {sl.signal for p in pages for sl in p.slots} | special | unused
    for s in msg.signals:
        if s.name in covered:
            continue
        if (
            mux is not None
            and s.multiplexer_ids
            and not any(i in (p.fixed.get(mux, -1),) for p in pages for i in s.multiplexer_ids)
        ):
            continue  # a multiplexer page nothing is sent on
        if array is not None and page_sig is not None and s.name in elements:
            continue  # past the end of the array on the last page
        problems.append(
            f"{where}: signal {s.name!r} is transmitted but bound to nothing "
            "(bind it, or list it in unused)"
        )
    if len(problems) > n0:
        return None
    mode = spec.get("pages", "spread")
    if mode not in ("spread", "burst"):
        problems.append(f"{where}: pages must be 'spread' or 'burst', got {mode!r}")
    period = msg.cycle_time / 1000.0 if msg.cycle_time else None
    return BoundMessage(
        msg.name,
        codec,
        sender,
        receivers,
        period,
        pages,
        counter,
        counter_mod,
        crc,
        crc_byte,
        crc_alg,
        mode != "burst",
        array,
        page_sig,
        per_page,
    )


def _mux_pages(
    by_mux: dict[int, list[Slot]],
    rest: list[Slot],
    sigs: dict[str, cantools.database.can.Signal],
    mux: str,
) -> list[Page]:
    pages = [Page({mux: m}, slots + rest) for m, slots in sorted(by_mux.items())]
    return pages or [Page({mux: 0}, rest)]


def codec_bits(sig: cantools.database.can.Signal) -> list[int]:
    """Bit positions (little-endian numbering: byte*8 + bit) a signal occupies."""
    if sig.byte_order == "little_endian":
        return list(range(sig.start, sig.start + sig.length))
    bits = []
    pos = sig.start
    for _ in range(sig.length):
        bits.append(pos)
        pos = pos - 1 if pos % 8 else pos + 15
    return bits


def describe(binding: Binding) -> list[str]:
    """One line per bound message: name, id, period, sender, receivers, signals."""
    out = []
    for m in binding.messages.values():
        per = f"{m.period_s * 1000:g} ms" if m.period_s else "event"
        e2e = " ".join(x for x in (m.counter and "counter", m.crc and "crc") if x)
        pages = f", {len(m.pages)} pages" if len(m.pages) > 1 else ""
        out.append(
            f"{m.name:<22} 0x{m.frame_id:08X}{'x' if m.is_extended else ' '} {per:>8} "
            f"{m.sender}->{','.join(m.receivers) or '-'}{pages} {e2e}".rstrip()
        )
        for v in sorted(m.values()):
            sigs = sorted({s.signal for p in m.pages for s in p.slots if s.value == v})
            shown = sigs if len(sigs) <= 3 else [*sigs[:2], f"... ({len(sigs)} signals)"]
            out.append(f"    {v:<28} <- {', '.join(shown)}")
    return out
