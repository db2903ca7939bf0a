"""Persistent memory of the BMS: what a real BMS keeps in EEPROM/flash across power cycles.

The image (:class:`NvmImage`) holds the SOC per series group, the SOH per group
(capacity estimate, resistance factor), lifetime counters and a bounded fault
log. :class:`PersistentMemory` loads it at power-on and saves it when the
firmware asks; neither raises on a bad file or a failing disk. Problems become
short strings in ``PersistentMemory.faults`` that the firmware turns into fault
flags, plus one log line (logger ``bms.firmware.nvm``) that says what to fix.

File format (one file per copy)::

    BMSNVM v=1 seq=42 len=1234 crc32=1a2b3c4d\\n
    {"seq": 42, "n_groups": 200, "soc": [0.5, null, ...], ...}

An ASCII header line (magic, format version, sequence number, payload length in
bytes, CRC32 of the payload by :func:`zlib.crc32` in 8 hex digits), then exactly
``len`` bytes of UTF-8 JSON. The payload repeats ``seq`` so that a damaged header
digit is caught too. ``null`` in ``soc`` and ``capacity_ah`` means "unknown"
(nan in Python); NaN and Infinity literals are rejected. On load everything is
checked: magic, version, length, CRC, JSON, the exact set of fields, their types,
array lengths against the pack's number of series groups, and value ranges.

Crash safety: two copies, A/B slots ``<path>.a`` and ``<path>.b``. Load reads both
and uses the valid copy with the higher sequence number. Save writes the other
slot (the one that does not hold the newest valid copy; slot A when neither is
valid) with sequence number + 1: the bytes go to ``<slot>.tmp`` in the same
directory, which is flushed and fsync'ed, renamed over the slot with
:func:`os.replace` (atomic), and the directory is fsync'ed. A kill at any instant
leaves the slot being written either old or new, never torn, and the other slot
untouched, so the last good state always loads; the second copy also covers a
copy damaged later (bit rot, a non-atomic file system). A stale ``.tmp`` file is
ignored and overwritten by the next save. One process writes a given path.

Save is blocking (an fsync takes milliseconds to tens of milliseconds): call it
from a slow task or at shutdown, not from the control tick.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import numbers
import operator
import os
import re
import zlib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bms.errors import ConfigError, InputError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "FaultEntry",
    "NvmImage",
    "PersistentMemory",
    "decode",
    "encode",
]

_log = logging.getLogger(__name__)

MAGIC = "BMSNVM"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 16 * 1024 * 1024  # a larger file is not ours
MAX_FAULT_TEXT = 200  # characters kept of a fault-log text
MAX_FAULTS = 32  # entries kept in PersistentMemory.faults
MAX_CAPACITY_AH = 1e6
MAX_RESISTANCE_FACTOR = 100.0
_MAX_INT = 2**63 - 1
_MAX_CODE = 0xFFFF_FFFF

_HEADER = re.compile(rb"BMSNVM v=(\d{1,6}) seq=(\d{1,19}) len=(\d{1,9}) crc32=([0-9a-f]{8})")
_MAX_HEADER_BYTES = 96


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _is_int(x: object) -> bool:
    if isinstance(x, bool):
        return False
    try:
        operator.index(x)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


def _as_float(x: Any) -> float:
    """``float(x)``, with +-inf for an integer too large for a float."""
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def _fmt(x: object) -> str:
    return f"{x:g}" if isinstance(x, float) else repr(x)


@dataclass(frozen=True)
class FaultEntry:
    """One fault-log entry.

    ``time_s``: the firmware clock when the fault was raised, s (>= 0);
    ``code``: the fault code (0 .. 2**32 - 1); ``text``: a short description
    (at most ``MAX_FAULT_TEXT`` characters).
    """

    time_s: float
    code: int
    text: str

    def __post_init__(self) -> None:
        t = self.time_s
        if not _is_real(t) or not math.isfinite(_as_float(t)) or _as_float(t) < 0:
            raise InputError(f"fault time_s: must be a finite number >= 0, got {self.time_s!r}")
        if not _is_int(self.code) or not 0 <= operator.index(self.code) <= _MAX_CODE:
            raise InputError(
                f"fault code: must be an integer in [0, {_MAX_CODE}], got {self.code!r}"
            )
        if not isinstance(self.text, str) or len(self.text) > MAX_FAULT_TEXT:
            raise InputError(f"fault text: must be a string of at most {MAX_FAULT_TEXT} characters")


_ARRAYS = ("soc", "capacity_ah", "resistance_factor")
_FLOAT_COUNTERS = ("charge_throughput_ah", "discharge_throughput_ah", "operating_time_s")
_INT_COUNTERS = ("power_on_count", "contactor_cycles")


@dataclass
class NvmImage:
    """Everything the BMS keeps across power cycles. Mutable: the firmware updates it.

    Per series group (lists or 1-D arrays of length ``n_groups``; an empty list
    on construction means "all default"):

    - ``soc``: state of charge, 0..1; nan = unknown, initialise from the rest OCV.
    - ``capacity_ah``: estimated capacity of the group, Ah (> 0); nan = use nominal.
    - ``resistance_factor``: estimated resistance / table resistance (> 0); 1 = new.

    Lifetime counters (>= 0): ``charge_throughput_ah`` and
    ``discharge_throughput_ah`` (Ah moved in each direction), ``power_on_count``,
    ``operating_time_s`` (time powered on, s), ``contactor_cycles`` (closings of
    the main contactors).

    ``fault_log``: the newest ``fault_log_size`` faults, oldest first. Add entries
    with :meth:`log_fault`. ``fault_log_size`` itself is not stored: it comes from
    :class:`PersistentMemory`.
    """

    n_groups: int
    soc: list[float] = field(default_factory=list)
    capacity_ah: list[float] = field(default_factory=list)
    resistance_factor: list[float] = field(default_factory=list)
    charge_throughput_ah: float = 0.0
    discharge_throughput_ah: float = 0.0
    power_on_count: int = 0
    operating_time_s: float = 0.0
    contactor_cycles: int = 0
    fault_log: list[FaultEntry] = field(default_factory=list)
    fault_log_size: int = field(default=64, compare=False)

    def __post_init__(self) -> None:
        if not _is_int(self.n_groups) or operator.index(self.n_groups) < 1:
            raise InputError(f"n_groups: must be an integer >= 1, got {self.n_groups!r}")
        defaults = {"soc": math.nan, "capacity_ah": math.nan, "resistance_factor": 1.0}
        for name, value in defaults.items():
            arr = getattr(self, name)
            if isinstance(arr, list) and not arr:
                setattr(self, name, [value] * self.n_groups)
        self.check()

    def log_fault(self, time_s: float, code: int, text: str) -> None:
        """Append a fault (time in s, code, text cut to ``MAX_FAULT_TEXT``), keep the newest N."""
        self.fault_log.append(FaultEntry(float(time_s), code, str(text)[:MAX_FAULT_TEXT]))
        del self.fault_log[: max(0, len(self.fault_log) - self.fault_log_size)]

    def check(self) -> None:
        """Raise :class:`InputError` naming the first field that cannot be stored."""
        n = self.n_groups
        if not _is_int(self.fault_log_size) or operator.index(self.fault_log_size) < 1:
            raise InputError(
                f"fault_log_size: must be an integer >= 1, got {self.fault_log_size!r}"
            )
        for name in _ARRAYS:
            try:
                values = list(getattr(self, name))
            except TypeError:
                raise InputError(f"{name}: must be a list of {n} numbers") from None
            if len(values) != n:
                raise InputError(f"{name}: must have n_groups = {n} values, got {len(values)}")
            for i, v in enumerate(values):
                if not _is_real(v):
                    raise InputError(f"{name}[{i}]: must be a number, got {v!r}")
                v = _as_float(v)
                if name == "soc" and not (math.isnan(v) or 0.0 <= v <= 1.0):
                    raise InputError(f"soc[{i}]: must be within [0, 1] or nan, got {_fmt(v)}")
                if name == "capacity_ah" and not (math.isnan(v) or 0.0 < v <= MAX_CAPACITY_AH):
                    raise InputError(
                        f"capacity_ah[{i}]: must be within (0, {MAX_CAPACITY_AH:g}] or nan, "
                        f"got {_fmt(v)}"
                    )
                if name == "resistance_factor" and not 0.0 < v <= MAX_RESISTANCE_FACTOR:
                    raise InputError(
                        f"resistance_factor[{i}]: must be within (0, {MAX_RESISTANCE_FACTOR:g}], "
                        f"got {_fmt(v)}"
                    )
        for name in _FLOAT_COUNTERS:
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(_as_float(v)) or _as_float(v) < 0:
                raise InputError(f"{name}: must be a finite number >= 0, got {_fmt(v)}")
        for name in _INT_COUNTERS:
            v = getattr(self, name)
            if not _is_int(v) or not 0 <= operator.index(v) <= _MAX_INT:
                raise InputError(f"{name}: must be an integer >= 0, got {_fmt(v)}")
        if not isinstance(self.fault_log, list) or not all(
            isinstance(e, FaultEntry) for e in self.fault_log
        ):
            raise InputError("fault_log: must be a list of FaultEntry")


_STORED = tuple(f.name for f in fields(NvmImage) if f.name != "fault_log_size")
_PAYLOAD_KEYS = frozenset(("seq", *_STORED))


def _num_or_null(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def encode(image: NvmImage, seq: int) -> bytes:
    """The file bytes of ``image`` with sequence number ``seq``: header line + JSON payload.

    Does not check the image (``PersistentMemory.save`` does), so tests can build
    files with bad values and a valid CRC.
    """
    payload: dict[str, Any] = {"seq": int(seq), "n_groups": int(image.n_groups)}
    for name in _ARRAYS:
        payload[name] = [_num_or_null(v) for v in getattr(image, name)]
    for name in _FLOAT_COUNTERS:
        payload[name] = float(getattr(image, name))
    for name in _INT_COUNTERS:
        payload[name] = operator.index(getattr(image, name))
    payload["fault_log"] = [
        {"time_s": float(e.time_s), "code": int(e.code), "text": e.text} for e in image.fault_log
    ]
    body = json.dumps(payload, allow_nan=False, ensure_ascii=True).encode("ascii")
    crc = zlib.crc32(body) & 0xFFFF_FFFF
    head = f"{MAGIC} v={FORMAT_VERSION} seq={int(seq)} len={len(body)} crc32={crc:08x}\n"
    return head.encode("ascii") + body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite literal {name}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate field {k!r}")
        out[k] = v
    return out


def decode(data: bytes, n_groups: int, *, fault_log_size: int = 64) -> tuple[int, NvmImage]:
    """Check the file bytes of one copy and return ``(seq, image)``.

    Raises :class:`InputError` whose message is the short reason ("crc mismatch",
    "truncated ...", "soc[3]: must be within [0, 1] or nan, got 1.7", ...).
    A stored fault log longer than ``fault_log_size`` is cut to the newest entries.
    """
    if not data:
        raise InputError("empty file")
    nl = data.find(b"\n", 0, _MAX_HEADER_BYTES)
    magic = MAGIC.encode("ascii") + b" "
    if not data.startswith(magic):
        raise InputError("truncated header" if magic.startswith(data) else "wrong magic")
    if nl < 0:
        raise InputError("truncated header" if len(data) < _MAX_HEADER_BYTES else "bad header")
    m = _HEADER.fullmatch(data[:nl])
    if m is None:
        vm = re.match(rb"BMSNVM v=(\d+) ", data[:nl])
        if vm is not None and int(vm.group(1)) != FORMAT_VERSION:
            raise InputError(f"unsupported format version {int(vm.group(1))}")
        raise InputError("bad header")
    version, seq, length, crc = int(m[1]), int(m[2]), int(m[3]), int(m[4], 16)
    if version != FORMAT_VERSION:
        raise InputError(f"unsupported format version {version}")
    body = data[nl + 1 :]
    if len(body) < length:
        raise InputError(f"truncated ({len(body)} of {length} payload bytes)")
    if len(body) > length:
        raise InputError(f"length mismatch ({len(body) - length} bytes after the payload)")
    if zlib.crc32(body) & 0xFFFF_FFFF != crc:
        raise InputError("crc mismatch")
    try:
        payload = json.loads(
            body.decode("utf-8"),
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicates,
        )
    except (ValueError, RecursionError) as exc:
        raise InputError(f"payload is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise InputError("payload is not a JSON object")
    missing = sorted(_PAYLOAD_KEYS - payload.keys())
    unknown = sorted(payload.keys() - _PAYLOAD_KEYS)
    if missing:
        raise InputError(f"missing field {missing[0]!r}")
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r}")
    if payload["seq"] != seq or isinstance(payload["seq"], bool):
        raise InputError(f"seq is {payload['seq']!r} in the payload, {seq} in the header")
    if not _is_int(payload["n_groups"]) or payload["n_groups"] != n_groups:
        raise InputError(f"n_groups is {payload['n_groups']!r}, the pack has {n_groups}")
    kw: dict[str, Any] = {}
    for name in _ARRAYS:
        arr = payload[name]
        if not isinstance(arr, list):
            raise InputError(f"{name}: must be a list")
        values = []
        for i, v in enumerate(arr):
            if v is None and name != "resistance_factor":
                v = math.nan
            if not _is_real(v):
                raise InputError(f"{name}[{i}]: must be a number, got {v!r}")
            values.append(_as_float(v))
        kw[name] = values
    for name in _FLOAT_COUNTERS:
        v = payload[name]
        kw[name] = _as_float(v) if _is_real(v) else v
    for name in _INT_COUNTERS:
        kw[name] = payload[name]
    log = payload["fault_log"]
    if not isinstance(log, list):
        raise InputError("fault_log: must be a list")
    entries = []
    for i, e in enumerate(log[-fault_log_size:]):
        if not isinstance(e, dict) or set(e) != {"time_s", "code", "text"}:
            raise InputError(f"fault_log[{i}]: must be an object with time_s, code, text")
        t = _as_float(e["time_s"]) if _is_real(e["time_s"]) else e["time_s"]
        entries.append(FaultEntry(t, e["code"], e["text"]))
    img = NvmImage(n_groups=n_groups, fault_log=entries, fault_log_size=fault_log_size, **kw)
    return seq, img


def _fix_hint(exc: OSError, directory: Path) -> str:
    code = exc.errno
    if code in (errno.ENOENT, errno.ENOTDIR):
        return f"create the directory {directory} or point the NVM path elsewhere"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"make the directory {directory} writable or point the NVM path elsewhere"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"free space on the file system of {directory}"
    return f"check the storage that holds {directory}"


class PersistentMemory:
    """Two-copy persistent storage of an :class:`NvmImage` at ``<path>.a`` / ``<path>.b``.

    ``n_groups``: series groups of the pack (a stored image of another size is
    rejected); ``fault_log_size``: fault-log entries kept (newest).

    ``faults``: short strings for the firmware's fault flags ("nvm missing",
    "nvm corrupt: crc mismatch, using backup", "nvm corrupt: no valid copy, using
    defaults", "nvm write failed: <OSError text>", "nvm write refused: <reason>").
    The firmware reads and clears it; a repeat of the last entry is not added and
    only the newest ``MAX_FAULTS`` are kept. ``sequence``: sequence number of the
    newest good copy (0: none).
    """

    def __init__(
        self, path: str | os.PathLike[str], n_groups: int, *, fault_log_size: int = 64
    ) -> None:
        self.path = Path(path)
        if not self.path.name or self.path.name in (".", ".."):
            raise ConfigError(f"must name a file, got {str(path)!r}", field="nvm path")
        if not _is_int(n_groups) or operator.index(n_groups) < 1:
            raise ConfigError(f"must be an integer >= 1, got {n_groups!r}", field="n_groups")
        if not _is_int(fault_log_size) or operator.index(fault_log_size) < 1:
            raise ConfigError(
                f"must be an integer >= 1, got {fault_log_size!r}", field="fault_log_size"
            )
        self.n_groups = operator.index(n_groups)
        self.fault_log_size = operator.index(fault_log_size)
        self.slot_paths = (
            self.path.with_name(self.path.name + ".a"),
            self.path.with_name(self.path.name + ".b"),
        )
        self.faults: list[str] = []
        self.sequence = 0
        self._newest: int | None = None  # slot index of the newest good copy
        self._surveyed = False
        self._failing = False  # the last save failed: log repeats at DEBUG only

    # -- load ---------------------------------------------------------------

    def _read(self, slot: Path) -> tuple[int, NvmImage] | str | None:
        """``(seq, image)`` of a good copy, the reason it is bad, or None when missing."""
        try:
            with open(slot, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            return f"read failed ({exc.strerror or exc})"
        if len(data) > MAX_FILE_BYTES:
            return "file too large"
        try:
            return decode(data, self.n_groups, fault_log_size=self.fault_log_size)
        except InputError as exc:
            return str(exc)
        except Exception as exc:  # never let a strange file crash the firmware
            return f"unreadable ({type(exc).__name__}: {exc})"

    def _survey(self) -> list[tuple[int, NvmImage] | str | None]:
        results = [self._read(p) for p in self.slot_paths]
        good = [(r[0], -i, i) for i, r in enumerate(results) if isinstance(r, tuple)]
        if good:
            self.sequence, _, self._newest = max(good)
        else:
            self.sequence, self._newest = 0, None
        self._surveyed = True
        return results

    def load(self) -> NvmImage:
        """The stored image: the newest good copy, else defaults. Never raises.

        A bad copy next to a good one gives the fault "nvm corrupt: <reason>, using
        backup"; no good copy gives "nvm missing" (no file at all: first start) or
        "nvm corrupt: no valid copy, using defaults".
        """
        try:
            results = self._survey()
        except Exception as exc:  # pragma: no cover - a bug; still never crash at power-on
            _log.exception("NVM load failed unexpectedly; using defaults")
            self._fault(f"nvm corrupt: {type(exc).__name__}, using defaults")
            self.sequence, self._newest, self._surveyed = 0, None, False
            return NvmImage(self.n_groups, fault_log_size=self.fault_log_size)
        for slot, r in zip(self.slot_paths, results, strict=True):
            if isinstance(r, str) and self._newest is not None:
                self._fault(f"nvm corrupt: {r}, using backup")
                _log.warning(
                    "NVM copy %s is bad (%s); using the other copy (seq %d); the next save "
                    "rewrites it",
                    slot,
                    r,
                    self.sequence,
                )
        if self._newest is not None:
            good = results[self._newest]
            assert isinstance(good, tuple)
            return good[1]
        if all(r is None for r in results):
            self._fault("nvm missing")
            _log.info(
                "no NVM at %s.{a,b} (first start?): using defaults, SOC from the rest OCV",
                self.path,
            )
        else:
            self._fault("nvm corrupt: no valid copy, using defaults")
            why = "; ".join(
                f"{slot.name}: {'missing' if r is None else r}"
                for slot, r in zip(self.slot_paths, results, strict=True)
            )
            _log.error(
                "no valid NVM copy (%s): using defaults, SOC from the rest OCV and nominal "
                "capacity; counters and fault log restart from zero",
                why,
            )
        return NvmImage(self.n_groups, fault_log_size=self.fault_log_size)

    # -- save ---------------------------------------------------------------

    def save(self, image: NvmImage) -> bool:
        """Store ``image`` crash-safely; True when it is on disk. Never raises on OSError.

        On failure: returns False, adds "nvm write failed: <reason>" (or "nvm write
        refused: <reason>" for an image that could not be loaded back) to
        ``faults`` and logs one line that says what to fix; the previous good
        copies stay as they were.
        """
        if not isinstance(image, NvmImage):
            raise TypeError(f"save() takes an NvmImage, got {type(image).__name__}")
        try:
            if image.n_groups != self.n_groups:
                raise InputError(f"n_groups is {image.n_groups!r}, the pack has {self.n_groups}")
            image.check()
        except InputError as exc:
            self._fault(f"nvm write refused: {exc}")
            self._log_failure(
                "NVM not saved: the image is invalid (%s); the firmware must keep values in "
                "range (this is a bug)",
                exc,
            )
            return False
        if not self._surveyed:
            self._survey()
        target = 0 if self._newest is None else 1 - self._newest
        seq = self.sequence + 1
        data = encode(replace(image, fault_log=image.fault_log[-self.fault_log_size :]), seq)
        slot = self.slot_paths[target]
        try:
            _write_atomic(slot, data)
        except OSError as exc:
            self._fault(f"nvm write failed: {exc}")
            self._log_failure(
                "NVM not saved to %s: %s; %s (the BMS runs on, changes since the last save "
                "are lost at power-off)",
                slot,
                exc,
                _fix_hint(exc, slot.parent),
            )
            return False
        self._newest, self.sequence = target, seq
        if self._failing:
            self._failing = False
            _log.info("NVM saves work again (%s, seq %d)", slot, seq)
        return True

    def _fault(self, text: str) -> None:
        if not self.faults or self.faults[-1] != text:
            self.faults.append(text)
        del self.faults[: max(0, len(self.faults) - MAX_FAULTS)]

    def _log_failure(self, msg: str, *args: object) -> None:
        _log.log(logging.DEBUG if self._failing else logging.ERROR, msg, *args)
        self._failing = True


def _write_atomic(slot: Path, data: bytes) -> None:
    """Write ``data`` to ``slot`` through ``<slot>.tmp``: fsync, rename, fsync the directory."""
    tmp = slot.with_name(slot.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, slot)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if os.name != "nt":  # Windows cannot open a directory; its rename is durable enough
        dfd = os.open(slot.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
