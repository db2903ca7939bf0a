"""The HIL report: one PNG per scenario and one self-contained HTML page per run.

A plot puts ground truth (solid) next to what the device reported over CAN
(dashed or dotted) in four panels that share the time axis: SOC, cell voltage,
current with its limits, and the discrete states. The HTML page lists the setup,
a summary, one row per test and, per test with a plot, a section with the image.

Both functions are pure: they read their arguments and write one file. Figures
are built on ``matplotlib.figure.Figure`` directly, never registered with pyplot,
so nothing stays open after a call. Current is positive when discharging.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# Headless machines have no display; pyplot, if anything imports it, must not look for one.
matplotlib.use("Agg")

__all__ = ["TestResult", "plot_scenario", "write_html"]

OUTCOMES = ("passed", "failed", "skipped", "error")
PROTECTION_LABELS = ("Ok", "Warning", "Alarm", "Fault")

_FIGSIZE_IN = (9.0, 8.0)
_DPI = 80
_LEGEND_FONTSIZE = 7
_MINUTES_ABOVE_S = 1200.0
_HOURS_ABOVE_S = 4 * 3600.0


@dataclass
class TestResult:
    """One test as the report shows it; paths are relative to the report folder."""

    __test__ = False  # a data class, not a pytest test class

    nodeid: str
    name: str
    requirement_id: str
    requirement: str
    outcome: str  # "passed" | "failed" | "skipped" | "error"
    duration_s: float
    message: str = ""  # the failure's one-line reason, or the skip reason
    plot: str | None = None
    trace: str | None = None
    figures: dict[str, str] = field(default_factory=dict)  # e.g. {"reaction time": "0.52 s"}


# --------------------------------------------------------------------------- plot


def plot_scenario(
    series: Mapping[str, npt.ArrayLike | Sequence[str]], path: Path, title: str
) -> Path | None:
    """Draw one scenario into a PNG at ``path``; None (and no file) without 2 time samples.

    ``series`` holds equal-length arrays keyed by name, ``t_s`` required, all others
    optional (see ``_figure``); a missing or all-NaN series is not drawn, NaN gaps stay
    gaps. ``bms_state_labels`` (optional) names the ``bms_state`` codes.
    """
    fig = _figure(series, title)
    if fig is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    fig.clear()
    return path


def _figure(series: Mapping[str, npt.ArrayLike | Sequence[str]], title: str) -> Figure | None:
    """Build the four-panel figure (SOC, cell voltage, current, states); None if no time axis.

    Keys: ``t_s``; ``soc_true_perc``, ``soc_true_min_perc``, ``soc_true_max_perc``,
    ``soc_reported_perc``; ``cell_v_true_min``, ``cell_v_true_max``, ``cell_v_reported_min``,
    ``cell_v_reported_max``; ``current_a``, ``discharge_limit_a``, ``charge_limit_a`` (drawn
    as minus the limit), ``current_reported_a``; ``contactors_closed``, ``fault_latched``,
    ``protection_level``, ``bms_state`` and ``bms_state_labels``.
    """
    if "t_s" not in series:
        return None
    t_s = np.asarray(series["t_s"], dtype=np.float64)
    finite_t = t_s[np.isfinite(t_s)]
    if t_s.ndim != 1 or finite_t.size < 2:
        return None
    arrays = _arrays(series, t_s.size)
    span_s = float(finite_t.max() - finite_t.min())
    scale_s, unit = _time_unit(span_s)
    x = t_s / scale_s

    fig = Figure(figsize=_FIGSIZE_IN, dpi=_DPI, layout="constrained")
    ax_soc, ax_v, ax_i, ax_state = fig.subplots(4, 1, sharex=True)
    fig.suptitle(title)

    _line(ax_soc, x, arrays.get("soc_true_perc"), "true mean", "C0", "-")
    _band(ax_soc, x, arrays.get("soc_true_min_perc"), arrays.get("soc_true_max_perc"), "C0")
    _line(ax_soc, x, arrays.get("soc_reported_perc"), "reported", "C1", "--")
    ax_soc.set_ylabel("SOC in %")

    _line(ax_v, x, arrays.get("cell_v_true_min"), "true min", "C0", "-")
    _line(ax_v, x, arrays.get("cell_v_true_max"), "true max", "C3", "-")
    _line(ax_v, x, arrays.get("cell_v_reported_min"), "reported min", "C0", "--")
    _line(ax_v, x, arrays.get("cell_v_reported_max"), "reported max", "C3", "--")
    ax_v.set_ylabel("cell voltage in V")

    charge_limit = arrays.get("charge_limit_a")
    _line(ax_i, x, arrays.get("current_a"), "true", "C0", "-")
    _line(ax_i, x, arrays.get("discharge_limit_a"), "discharge limit", "C3", "--")
    _line(ax_i, x, None if charge_limit is None else -charge_limit, "-charge limit", "C2", "--")
    _line(ax_i, x, arrays.get("current_reported_a"), "reported", "C1", ":")
    ax_i.set_ylabel("current in A\n(+ = discharge)")

    labels = series.get("bms_state_labels")
    names = None if labels is None else [str(s) for s in np.asarray(labels, dtype=object).ravel()]
    _states(ax_state, x, arrays, names)
    ax_state.set_ylabel("state")
    ax_state.set_xlabel(f"time in {unit}")

    x0, x1 = float(finite_t.min()) / scale_s, float(finite_t.max()) / scale_s
    for ax in (ax_soc, ax_v, ax_i, ax_state):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            # outside, right of the panel: a legend never hides data
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=_LEGEND_FONTSIZE)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
    if x1 > x0:
        ax_state.set_xlim(x0, x1)
    return fig


def _arrays(
    series: Mapping[str, npt.ArrayLike | Sequence[str]], n: int
) -> dict[str, npt.NDArray[np.float64]]:
    """Every numeric series as float64 of length ``n``; all-NaN ones left out."""
    out: dict[str, npt.NDArray[np.float64]] = {}
    for key, value in series.items():
        if key in ("t_s", "bms_state_labels"):
            continue
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (n,):
            raise ValueError(
                f"series {key!r} has shape {arr.shape}, expected ({n},) like 't_s'; "
                "resample it onto the same time base"
            )
        if not np.all(np.isnan(arr)):
            out[key] = arr
    return out


def _time_unit(span_s: float) -> tuple[float, str]:
    """Seconds per axis unit and the unit's name for a time span."""
    if span_s > _HOURS_ABOVE_S:
        return 3600.0, "h"
    if span_s > _MINUTES_ABOVE_S:
        return 60.0, "min"
    return 1.0, "s"


def _line(
    ax: Axes,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64] | None,
    label: str,
    color: str,
    style: str,
) -> None:
    if y is not None:
        ax.plot(x, y, style, color=color, lw=1.0, label=label)


def _band(
    ax: Axes,
    x: npt.NDArray[np.float64],
    lo: npt.NDArray[np.float64] | None,
    hi: npt.NDArray[np.float64] | None,
    color: str,
) -> None:
    """A light band between ``lo`` and ``hi``; a lone bound is drawn as a thin line."""
    if lo is not None and hi is not None:
        ok = np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(x, lo, hi, where=ok, color=color, alpha=0.2, lw=0, label="true min-max")
    elif lo is not None:
        ax.plot(x, lo, "-", color=color, lw=0.5, alpha=0.5, label="true min")
    elif hi is not None:
        ax.plot(x, hi, "-", color=color, lw=0.5, alpha=0.5, label="true max")


def _states(
    ax: Axes,
    x: npt.NDArray[np.float64],
    arrays: Mapping[str, npt.NDArray[np.float64]],
    state_labels: Sequence[str] | None,
) -> None:
    """Discrete signals as step plots, one lane each, tick labels in the lane's colour.

    Bottom to top: contactors, fault latch, protection level (always Ok..Fault), BMS state
    (only the codes that occur, named by ``state_labels``). A code with no name shows as
    its number.
    """
    lanes: list[tuple[str, str, Sequence[str], bool]] = [
        ("contactors_closed", "contactors", ("open", "closed"), True),
        ("fault_latched", "fault latch", ("clear", "latched"), True),
        ("protection_level", "protection", PROTECTION_LABELS, True),
        ("bms_state", "BMS state", state_labels or (), False),
    ]
    ticks: list[float] = []
    tick_labels: list[str] = []
    tick_colors: list[str] = []
    base = 0.0
    for i, (key, label, names, all_names) in enumerate(lanes):
        values = arrays.get(key)
        if values is None:
            continue
        codes_now = np.rint(values)
        present = {int(c) for c in codes_now[np.isfinite(codes_now)]}
        codes = sorted(present | set(range(len(names)))) if all_names else sorted(present)
        color = f"C{i}"
        # each code gets one unit of height; NaN stays NaN, so gaps stay gaps
        y = base + np.searchsorted(np.asarray(codes, dtype=np.float64), codes_now)
        y = np.where(np.isfinite(codes_now), y, np.nan)
        ax.step(x, y, where="post", color=color, lw=1.2, label=label)
        for rank, code in enumerate(codes):
            ticks.append(base + rank)
            tick_labels.append(names[code] if 0 <= code < len(names) else str(code))
            tick_colors.append(color)
        base += len(codes) + 0.5
    if ticks:
        ax.set_yticks(ticks, tick_labels, fontsize=_LEGEND_FONTSIZE)
        for tick, color in zip(ax.get_yticklabels(), tick_colors, strict=True):
            tick.set_color(color)
        ax.set_ylim(-0.5, base - 0.5)
    else:
        ax.set_yticks([])


# --------------------------------------------------------------------------- html

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { margin-bottom: 0.2em; }
.generated { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; white-space: nowrap; }
td.msg, p.msg { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.9em; }
td.outcome, span.outcome { font-weight: bold; }
.passed { background: #d4f4d4; } .failed { background: #f8c8c8; }
.skipped { background: #f4ecc0; } .error { background: #f0b0e0; } .other { background: #ddd; }
ul.figures { margin: 0; padding-left: 1.1em; }
section { border-top: 1px solid #ccc; margin-top: 1.5em; }
section img { max-width: 100%; height: auto; }
.summary { font-size: 1.05em; }
"""


def write_html(
    path: Path, title: str, header: Mapping[str, str], results: Sequence[TestResult]
) -> Path:
    """Write the run's report as one self-contained HTML file; returns ``path``.

    Sections keep the collection order; the tests table links to each test's section.
    Plot and trace paths are written as given, relative to the report folder.
    """
    path = Path(path)
    esc = html.escape
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    anchors = {i: f"test-{i}" for i, r in enumerate(results) if r.plot}

    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="generated">generated at {esc(generated)}</p>',
        "<h2>Setup</h2>",
        "<table>",
    ]
    parts += [f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in header.items()]
    parts += ["</table>", f'<p class="summary">{esc(_summary(results))}</p>', "<h2>Tests</h2>"]
    parts += [
        "<table>",
        "<tr><th>requirement</th><th>requirement text</th><th>test</th><th>outcome</th>"
        "<th>duration</th><th>message</th><th>measured</th><th>trace</th></tr>",
    ]
    for i, r in enumerate(results):
        name = esc(r.name)
        if i in anchors:
            name = f'<a href="#{anchors[i]}">{name}</a>'
        parts.append(
            "<tr>"
            f"<td>{esc(r.requirement_id)}</td>"
            f"<td>{esc(r.requirement)}</td>"
            f'<td title="{esc(r.nodeid)}">{name}</td>'
            f'<td class="outcome {_css_class(r.outcome)}">{esc(r.outcome)}</td>'
            f'<td class="num">{r.duration_s:.2f} s</td>'
            f'<td class="msg">{esc(r.message)}</td>'
            f"<td>{_figures_html(r.figures)}</td>"
            f"<td>{_link(r.trace)}</td>"
            "</tr>"
        )
    parts.append("</table>")

    for i, r in enumerate(results):
        if i not in anchors or r.plot is None:
            continue
        parts += [
            f'<section id="{anchors[i]}">',
            f"<h2>{esc(r.requirement_id)} &mdash; {esc(r.name)} &mdash; "
            f'<span class="outcome {_css_class(r.outcome)}">{esc(r.outcome)}</span></h2>',
        ]
        if r.message:
            parts.append(f'<p class="msg">{esc(r.message)}</p>')
        if r.figures:
            parts.append(_figures_html(r.figures))
        if r.trace:
            parts.append(f"<p>CAN trace: {_link(r.trace)}</p>")
        parts.append(f'<img src="{_href(r.plot)}" alt="{esc(r.name)}">')
        parts.append("</section>")

    parts += ["</body>", "</html>", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _summary(results: Sequence[TestResult]) -> str:
    counts = dict.fromkeys(OUTCOMES, 0)
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    total_s = sum(r.duration_s for r in results)
    text = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    return f"{len(results)} tests: {text}; total duration {total_s:.2f} s"


def _css_class(outcome: str) -> str:
    return outcome if outcome in OUTCOMES else "other"


def _href(relpath: str) -> str:
    """A relative path as an attribute value: URL-quoted, then HTML-escaped."""
    return html.escape(quote(relpath.replace("\\", "/")), quote=True)


def _link(relpath: str | None) -> str:
    if not relpath:
        return ""
    return f'<a href="{_href(relpath)}">{html.escape(Path(relpath).name)}</a>'


def _figures_html(figures: Mapping[str, Any]) -> str:
    if not figures:
        return ""
    items = "".join(
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in figures.items()
    )
    return f'<ul class="figures">{items}</ul>'
