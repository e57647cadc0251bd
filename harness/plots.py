"""Inline SVG figures drawn with matplotlib: the one way a report (a chaos run's, a matrix's) makes
a plot, so every plot has real axes (several ticks, labels, a legend) and none collapses to a
degenerate axis when every value is 0 or there is none.

matplotlib is imported inside the functions: the CLI starts without it (`storlab validate` never
draws). Figures are made with the object API (``Figure``, no pyplot): no GUI backend is chosen, no
global figure registry grows, and nothing here changes matplotlib's settings for the rest of the
process (every setting is in an ``rc_context``). Text stays text in the SVG (``svg.fonttype``
none: smaller, searchable, escaped by matplotlib's writer); mathtext is off (``text.parse_math``),
so a ``$`` in data from a lab is drawn as itself instead of being parsed (and failing to parse)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import Formatter


def svg(draw: Callable[[Figure], None], *, key: str, size: tuple[float, float] = (6.4, 3.2)) -> str:
    """The figure ``draw`` fills in, as an ``<svg>`` element to put inline in an HTML page (no XML
    declaration, no external files). The same drawing gives the same text: the hash salt of the
    SVG's ids is ``key`` (not a random one) and no date is written. ``key`` should differ between
    figures of one page: their clip paths' ids then do not collide in the page's one id space."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    buf = io.StringIO()
    with rc_context({"svg.fonttype": "none", "text.parse_math": False, "svg.hashsalt": f"storlab:{key}",
                     "font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8,
                     "legend.framealpha": 0.8, "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"]}):
        fig = Figure(figsize=size, layout="constrained")
        draw(fig)
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):].strip() + "\n"


def finite(values: Iterable[Any]) -> list[float]:
    """The numbers among ``values`` that can be drawn (None, NaN, text and the infinities are not)."""
    return [float(v) for v in values
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]


def column(values: Iterable[Any]) -> list[float]:
    """``values`` as floats for a line, NaN where there is no number: the line breaks there."""
    return [float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan for v in values]


def y_span(ax: Axes, values: Iterable[Any], *, counts: bool = False) -> None:
    """y from 0 (or the lowest value, if negative) to a little over the highest: (0, 1) when there
    is no value or every one is 0, where matplotlib would centre a flat line on 0 with negative ticks.
    ``counts``: ticks on whole numbers only."""
    from matplotlib.ticker import MaxNLocator

    if counts:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
    nums = finite(values)
    lo, hi = min([0.0, *nums]), max([0.0, *nums])
    if hi == lo:
        hi = lo + 1.0
    ax.set_ylim(lo - (0.05 * (hi - lo) if lo < 0 else 0.0), hi + 0.08 * (hi - lo))


def y_log(ax: Axes, values: Iterable[Any]) -> None:
    """A log y axis when some value is above 0 (latencies span milliseconds to stalls of seconds);
    a linear (0, 1) one when none is, where a log axis would have nothing to scale to."""
    if any(v > 0 for v in finite(values)):
        ax.set_yscale("log", nonpositive="mask")
        # matplotlib's default labels are 10^-2 in mathtext, which is off (see svg): plain numbers
        # instead, on the minor ticks too when the values span too few decades for the major ones
        ax.yaxis.set_major_formatter(_plain_log(minor=False))
        ax.yaxis.set_minor_formatter(_plain_log(minor=True))
    else:
        ax.set_ylim(0.0, 1.0)


def _plain_log(minor: bool) -> Formatter:
    """matplotlib's choice of which log ticks to label, written as 0.01, 0.2, 1, 30."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""
    return Plain(labelOnlyBase=not minor)


def x_span(ax: Axes, xs: Iterable[Any]) -> None:
    """x over ``xs``; (0, 1) when there is none, and a lone value in the middle of a span of ticks
    (matplotlib's 5% margin around it would label 4.8, 4.9, 5.0 for one cell at 5)."""
    nums = set(finite(xs))
    if not nums:
        ax.set_xlim(0.0, 1.0)
    elif len(nums) == 1:
        x = nums.pop()
        d = abs(x) * 0.5 or 1.0
        ax.set_xlim(x - d, x + d)


def line_plot(series: Mapping[str, Sequence[tuple[float, float]]], *, xlabel: str, ylabel: str, key: str,
              size: tuple[float, float] = (4.8, 2.9)) -> str:
    """One line with markers per series (its label in the legend; one unlabelled series: no legend),
    points joined in order of x, as an inline ``<svg>``."""
    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        for label, pts in series.items():
            ordered = sorted(pts)
            ax.plot([x for x, _ in ordered], [y for _, y in ordered], marker="o", markersize=4,
                    label=label or None, clip_on=False)  # a point at y=0 whole, not halved by the axis
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        x_span(ax, [x for pts in series.values() for x, _ in pts])
        y_span(ax, [y for pts in series.values() for _, y in pts])
        if any(series):
            ax.legend(loc="best")
    return svg(draw, key=key, size=size)
