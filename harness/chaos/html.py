"""A chaos run's report as one self-contained HTML page (inline SVG, no scripts, no external
files), from the timeline harness.chaos.report makes: the verdict and its findings, a plot of
acknowledged writes, latency and refusals per second with each fault as a shaded band, the faults
as a table, the kinds the schedule skipped, and how to replay the run.

Everything in the timeline came from a lab (a fault's ``what``, a finding's detail, a writer's
name): it is escaped here, and a value of the wrong type is shown as text, not trusted to be a
number. The same timeline gives the same page, byte for byte (a test compares two renderings)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import plots

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STYLE = ("body{font-family:sans-serif;max-width:72em;margin:1em auto;padding:0 1em}"
         "td,th{border:1px solid #999;padding:3px 6px;font-size:90%;text-align:left}table{border-collapse:collapse}"
         ".pass{color:#070}.fail{color:#b00}svg{max-width:100%;height:auto}code{background:#eee;padding:1px 3px}")
#: a fault's band: within the backend's promise, or it stalled writes beyond it
BAND, BAND_EXCEEDED = "#f0a030", "#d62728"
BAND_ALPHA = 0.22
#: findings and notes listed at most (a run that lost everything has thousands; the counts say how many)
LIST_MAX = 500
#: a band's label, cut to this many characters (a lab names its faults)
LABEL_MAX = 32


def esc(value: Any) -> str:
    return html.escape(str(value))


def num(value: Any, fmt: str = ".2f", none: str = "-") -> str:
    """``value`` formatted as a number, escaped; ``none`` for None, the value as text if it is not a number."""
    if value is None:
        return none
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return esc(format(value, fmt))
        except ValueError:  # a float where a count was expected
            return esc(value)
    return esc(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str | bytes) else []


def render(data: Mapping[str, Any], run_dir: Path | None = None) -> str:
    """The report of the chaos run whose timeline is ``data`` (harness.chaos.report.timeline), as
    one HTML page; ``run_dir``, where the run was saved, goes into the replay command."""
    verdict = _mapping(data.get("verdict"))
    bands = [_mapping(b) for b in _list(data.get("bands"))]
    parts = [
        f"<!doctype html><html lang=en><meta charset=utf-8><title>chaos run, seed {esc(data.get('seed'))}</title>"
        f"<style>{STYLE}</style><body>",
        _heading(data, verdict), _findings(verdict), _notes(verdict),
        "<h2>Timeline</h2><p>Per second of the run: writes acknowledged, their latency (log scale; a gap: none "
        "acknowledged that second) and writes refused. A shaded band is a fault, from when it was applied to when "
        "it was undone; red: writes stalled longer than the backend promises for that kind.</p>",
        _plot(_mapping(data.get("series")), bands, data.get("seconds")),
        _fault_table(bands), _skipped(data.get("schedule")), _replay(run_dir, data.get("lab")),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def write(run_dir: Path, data: Mapping[str, Any]) -> Path:
    """``run_dir``/report.html, the report of the run saved in ``run_dir``."""
    out = run_dir / "report.html"
    out.write_text(render(data, run_dir), encoding="utf-8")
    return out


# -- the verdict ---------------------------------------------------------------------------------
def _heading(data: Mapping[str, Any], verdict: Mapping[str, Any]) -> str:
    ok = verdict.get("ok") is True
    c = _mapping(verdict.get("counts"))
    av = _mapping(verdict.get("availability"))
    started = data.get("started_wall")
    when = (f", started {datetime.fromtimestamp(started, UTC):%Y-%m-%d %H:%M:%S} UTC"
            if isinstance(started, int | float) and not isinstance(started, bool) and 0 <= started < 1e11 else "")
    slow = sum(1 for f in _list(av.get("faults")) if _mapping(f).get("exceeded") is True)
    longest = _mapping(av.get("longest_stall"))
    out = [f"<h1>Chaos run, seed {esc(data.get('seed'))}: "
           f"<span class={'pass' if ok else 'fail'}>{'PASS' if ok else 'FAIL'}</span></h1>",
           f"<p>{num(data.get('seconds'), '.1f')} s of writes{esc(when)}, storlab {esc(data.get('storlab'))}.</p>",
           f"<p><b>{num(verdict.get('acked'), 'd')}</b> writes acknowledged, {num(verdict.get('in_doubt'), 'd')} in doubt "
           f"(never acknowledged: they may or may not have landed), {num(verdict.get('superseded'), 'd')} overwritten "
           f"by a later acknowledged write. Findings: <b>{num(c.get('lost'), 'd', '0')} lost</b> "
           f"({num(c.get('unreadable'), 'd', '0')} of them unreadable), <b>{num(c.get('torn'), 'd', '0')} torn</b>, "
           f"<b>{num(c.get('corrupt'), 'd', '0')} corrupt</b>, <b>{num(c.get('stale'), 'd', '0')} stale</b>; "
           f"{slow} fault(s) stalled writes beyond the backend's bound.</p>",
           f"<p>{num(av.get('ops_per_s'), '.1f')} acknowledged writes/s, {num(av.get('errors'), 'd')} refused; longest "
           f"stall {num(longest.get('seconds'), '.2f')} s"
           + (f" (writer {esc(longest.get('writer'))}, from +{num(longest.get('start'), '.1f')} s)" if longest else "")
           + ".</p>"]
    torn = _list(verdict.get("ledger_torn_lines"))
    if torn:
        out.append(f"<p>Ledger lines that could not be read: {esc(', '.join(str(n) for n in torn[:20]))}"
                   f"{' ...' if len(torn) > 20 else ''} (a torn last line after a crash is expected).</p>")
    return "\n".join(out)


def _findings(verdict: Mapping[str, Any]) -> str:
    found = [_mapping(f) for f in _list(verdict.get("findings"))]
    if not found:
        return "<h2>Findings</h2><p>None: every acknowledged write was read back as written.</p>"
    items = "".join(
        f"<li><b>{esc(f.get('category'))}</b>: writer <code>{esc(f.get('writer'))}</code> seq {esc(f.get('seq'))} "
        f"at <code>{esc(f.get('target'))}</code>+{esc(f.get('offset'))}, acknowledged "
        f"{num(f.get('acked_s'), '.2f', '?')} s into the run: {esc(f.get('detail'))}</li>" for f in found[:LIST_MAX])
    return f"<h2>Findings ({len(found)})</h2><ul>{items}{_more(len(found))}</ul>"


def _notes(verdict: Mapping[str, Any]) -> str:
    notes = _list(verdict.get("notes"))
    if not notes:
        return ""
    items = "".join(f"<li>{esc(n)}</li>" for n in notes[:LIST_MAX])
    return (f"<h2>Notes ({len(notes)})</h2><p>Damage where a write in doubt may have caused it "
            f"(not a finding):</p><ul>{items}{_more(len(notes))}</ul>")


def _more(n: int) -> str:
    return f"<li>... and {n - LIST_MAX} more</li>" if n > LIST_MAX else ""


# -- the plot ------------------------------------------------------------------------------------
def _plot(series: Mapping[str, Any], bands: Sequence[Mapping[str, Any]], seconds: Any) -> str:
    # second i counts what happened in [i, i+1): drawn at its middle, so it lines up with the bands
    t = [v + 0.5 for v in plots.column(_list(series.get("t")))]
    cols = {k: plots.column(_list(series.get(k))) for k in ("ops", "errors", "latency_mean", "latency_max")}
    n = min([len(t), *(len(c) for c in cols.values())])
    t, cols = t[:n], {k: c[:n] for k, c in cols.items()}
    end = max(plots.finite([*t, seconds, *(b.get("end") for b in bands)]), default=0.0)

    def draw(fig: Figure) -> None:
        writes, latency, errors = fig.subplots(3, 1, sharex=True, height_ratios=[2.2, 1.6, 1])
        writes.plot(t, cols["ops"], color="#1f77b4", linewidth=1, label="acknowledged writes / s")
        writes.set_ylabel("acknowledged / s")
        plots.y_span(writes, cols["ops"], counts=True)
        latency.plot(t, cols["latency_max"], color="#9467bd", linewidth=1, label="latency, slowest in the second")
        latency.plot(t, cols["latency_mean"], color="#2ca02c", linewidth=1, label="latency, mean")
        latency.set_ylabel("write latency (s)")
        plots.y_log(latency, [*cols["latency_mean"], *cols["latency_max"]])
        errors.plot(t, cols["errors"], color="#d62728", linewidth=1, drawstyle="steps-mid", label="refused writes / s")
        errors.set_ylabel("refused / s")
        errors.set_xlabel("seconds from the run's start")
        plots.y_span(errors, cols["errors"], counts=True)
        errors.set_xlim(0.0, max(end, 1.0))
        _bands(fig, bands, (writes, latency, errors))
        for ax in (writes, latency, errors):
            ax.legend(loc="upper right")
    return plots.svg(draw, key=f"chaos:{n}:{len(bands)}", size=(10.0, 6.8))


def _bands(fig: Figure, bands: Sequence[Mapping[str, Any]], axes: Sequence[Axes]) -> None:
    """Each fault a shaded band over every panel, labelled (e<id> <kind>) at the top of the first,
    labels staggered in three rows so neighbours do not print over each other."""
    from matplotlib.patches import Patch

    colours: set[str] = set()
    for i, b in enumerate(bands):
        span = plots.finite([b.get("start"), b.get("end")])
        if len(span) != 2:
            continue
        colour = BAND_EXCEEDED if b.get("exceeded") is True else BAND
        colours.add(colour)
        for ax in axes:
            ax.axvspan(span[0], max(span), color=colour, alpha=BAND_ALPHA, linewidth=0)
        label = f"e{b.get('id')} {b.get('kind')}"
        axes[0].text(span[0], 0.97 - 0.1 * (i % 3), label[:LABEL_MAX], transform=axes[0].get_xaxis_transform(),
                     fontsize=7, va="top", ha="left", clip_on=True)
    handles = [Patch(color=colour, alpha=0.4, label=label) for colour, label in
               ((BAND, "fault (from applied to undone)"), (BAND_EXCEEDED, "fault that stalled writes beyond its bound"))
               if colour in colours]
    if handles:
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))


# -- the tables ----------------------------------------------------------------------------------
def _fault_table(bands: Iterable[Mapping[str, Any]]) -> str:
    rows = "".join(
        f"<tr{' class=fail' if b.get('exceeded') is True else ''}><td>e{esc(b.get('id'))}</td><td>{esc(b.get('kind'))}</td>"
        f"<td>{esc(b.get('what'))}</td><td>{num(b.get('start'), '.1f')}</td><td>{num(b.get('end'), '.1f')}</td>"
        f"<td>{num(b.get('stall'), '.2f')}{_by(b.get('stall_writer'))}</td><td>{num(b.get('bound'), 'g', 'none')}</td>"
        f"<td>{'EXCEEDED' if b.get('exceeded') is True else 'no'}</td></tr>" for b in bands)
    if not rows:
        return "<h2>Faults</h2><p>No fault was applied.</p>"
    return ("<h2>Faults</h2><p>Longest stall: the longest time any writer went without an acknowledgement, "
            "of the stalls overlapping the fault (a stall that outlasted the fault counts whole). "
            "Bound: the longest stall the backend promises for this kind of fault.</p>"
            "<table><tr><th>id</th><th>kind</th><th>what</th><th>start s</th><th>end s</th><th>longest stall s</th>"
            f"<th>bound s</th><th>exceeded</th></tr>{rows}</table>")


def _by(writer: Any) -> str:
    return "" if writer is None else f" (writer {esc(writer)})"


def _skipped(schedule: Any) -> str:
    if not isinstance(schedule, Mapping):
        return "<h2>Schedule</h2><p>No schedule was saved with this run: the faults are those the ledger recorded.</p>"
    skipped = [_mapping(s) for s in _list(schedule.get("skipped"))]
    kinds = ", ".join(str(k) for k in _list(schedule.get("kinds")))
    head = (f"<h2>Schedule</h2><p>Drawn from seed {esc(schedule.get('seed'))} for {num(schedule.get('duration'), 'g')} s "
            f"on provider {esc(schedule.get('provider'))}, from the kinds {esc(kinds or '(none)')}.</p>")
    if not skipped:
        return head + "<p>No kind was skipped.</p>"
    items = "".join(f"<li><b>{esc(s.get('kind'))}</b>: {esc(s.get('reason'))}</li>" for s in skipped)
    return f"{head}<p>Kinds skipped (this lab cannot give them):</p><ul>{items}</ul>"


def _replay(run_dir: Path | None, lab: object = None) -> str:
    where = esc(run_dir) if run_dir is not None else "RUNDIR"
    name = esc(lab) if isinstance(lab, str) and lab else "LAB"
    what = "; ".join(w for w in ("" if name != "LAB" else "LAB: the lab's name",
                                   "" if run_dir is not None else "RUNDIR: this run's directory") if w)
    return ("<h2>Replay</h2><p>To run this schedule again (its faults, at their times on the schedule's clock) "
            f"on a lab of the same shape{f' ({what})' if what else ''}:</p>"
            f"<pre><code>storlab chaos {name} --replay {where}</code></pre>")
