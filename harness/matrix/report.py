"""Matrix results and reports: cells x tests with outcomes and the figures tests record.

    STORLAB_HOME/matrices/NAME/last.json    the latest result of every (cell, test) run so far
    STORLAB_HOME/matrices/NAME/report.md    the table
    STORLAB_HOME/matrices/NAME/report.html  the table and plots (self-contained: inline SVG)

Every text in them is redacted (log.redact: registered secrets, private keys, cephx keys) before it
is written: a failure's reason is a test's traceback, and may quote a node's configuration.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from harness import log, plots
from harness.matrix import spec as mx

MARK = {"passed": "pass", "failed": "FAIL", "xfailed": "xfail (expected)", "skipped": "skip", "error": "ERROR"}
COLOUR = {"passed": "#cfc", "failed": "#f99", "xfailed": "#cde", "skipped": "#eee", "error": "#f99"}


def results_file(m: mx.Matrix) -> Path:
    return m.workdir() / "last.json"


def load_results(m: mx.Matrix) -> dict[str, Any] | None:
    f = results_file(m)
    return json.loads(f.read_text()) if f.exists() else None


def save(m: mx.Matrix, cells: list[mx.Cell], results: dict[str, dict[str, Any]], lab_events: dict[str, Any],
         merge: bool = False) -> tuple[Path, Path]:
    prev = load_results(m) if merge else None
    data: dict[str, Any] = {"matrix": m.name, "file": str(m.file), "when": time.time(),
                            "axes": {a: list(ax.values) for a, ax in m.model.axes.items()},
                            "cells": {}, "results": {}, "labs": {}}
    if prev:
        data["cells"], data["results"], data["labs"] = prev.get("cells", {}), prev.get("results", {}), prev.get("labs", {})
    for c in cells:
        data["cells"][c.name] = {"values": c.values, "valid": c.valid, "problems": [str(p) for p in c.problems],
                                 "lab": m.lab_name(c) if c.valid else None}
    for cell, tests in results.items():
        data["results"].setdefault(cell, {}).update(tests)
    data["labs"].update(lab_events)
    data = log.redact_data(data)
    m.workdir().mkdir(parents=True, exist_ok=True)
    results_file(m).write_text(json.dumps(data, indent=2, sort_keys=True))
    return write(m, data)


def _numeric(m: mx.Matrix, axis: str) -> dict[str, float] | None:
    ax = m.model.axes[axis]
    if ax.path is None:
        return None
    out = {}
    for name, v in ax.values.items():
        try:
            out[name] = float(v)
        except (TypeError, ValueError):
            return None
    return out


def _figure_text(figs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figs.items())


def _under_writes(labinfo: dict[str, Any]) -> str:
    """What the checker said of a reconfiguration made under writes ("" when none was checked)."""
    c = labinfo.get("reconfigure_check")
    if not c:
        return ""
    return f", under writes: {'PASS' if c['ok'] else 'FAIL'} {c['acked']} acked, {c['lost']} lost"


def table(data: dict[str, Any]) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Header, then per cell: (text, outcome) cells: cell, axis values, lab, one per test."""
    tests = sorted({t for r in data["results"].values() for t in r})
    axes = list(data["axes"])
    head = ["cell", *axes, "lab", *tests]
    rows = []
    for cname, cinfo in data["cells"].items():
        labinfo = data["labs"].get(cname, {})
        labtxt = ("invalid: " + cinfo["problems"][0]) if not cinfo["valid"] else (
            f"built {labinfo['built_s']:.0f}s" if "built_s" in labinfo else
            f"reconfigured {labinfo['reconfigured_s']:.1f}s{_under_writes(labinfo)}" if "reconfigured_s" in labinfo
            else "-")
        if labinfo.get("versions"):
            labtxt += f"; {labinfo['versions']}"
        row = [(cname, ""), *((cinfo["values"].get(a, "-"), "") for a in axes), (labtxt, "")]
        for t in tests:
            r = data["results"].get(cname, {}).get(t)
            if r is None:
                row.append(("-", ""))
            else:
                figs = _figure_text(r.get("figures", {}))
                row.append((MARK.get(r["outcome"], r["outcome"]) + (f" ({figs})" if figs else ""), r["outcome"]))
        rows.append(row)
    return head, rows


def write(m: mx.Matrix, data: dict[str, Any]) -> tuple[Path, Path]:
    data = log.redact_data(data)
    head, rows = table(data)
    md = [f"# Matrix {m.name}", "", m.model.description, "",
          f"Cells x tests, {time.strftime('%Y-%m-%d %H:%M', time.localtime(data['when']))}. "
          "`xfail (expected)`: a failure the matrix expects in that cell (strict).", "",
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(t.replace("|", "/") for t, _ in r) + " |" for r in rows]
    rebuilt = [v["built_s"] for v in data["labs"].values() if "built_s" in v]
    reconf = [v["reconfigured_s"] for v in data["labs"].values() if "reconfigured_s" in v]
    if rebuilt or reconf:
        md += ["", f"Labs built: {len(rebuilt)} (mean {sum(rebuilt) / max(1, len(rebuilt)):.1f} s); "
                   f"reconfigured instead of rebuilt: {len(reconf)} (mean {sum(reconf) / max(1, len(reconf)):.2f} s)."]
    out_md = m.workdir() / "report.md"
    out_md.write_text("\n".join(md) + "\n")
    cells_html = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td style="background:{COLOUR.get(o, "#fff")}">{html.escape(t)}</td>' for t, o in r)
                   + "</tr>" for r in rows)
    plots = "".join(plots_svg(m, data))
    out_html = m.workdir() / "report.html"
    out_html.write_text(
        f"<!doctype html><meta charset=utf-8><title>matrix {html.escape(m.name)}</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:3px 6px;font-size:90%}"
        "table{border-collapse:collapse}</style>"
        f"<h1>Matrix {html.escape(m.name)}</h1><p>{html.escape(m.model.description)}</p>"
        f"<table><tr>{cells_html}</tr>{body}</table>{plots}\n")
    return out_md, out_html


def plots_svg(m: mx.Matrix, data: dict[str, Any]) -> list[str]:
    """One small plot per (numeric axis, figure): the figure against the axis value, one point per
    cell and test (a stall against network.ping-timeout, say), joined by a line per combination of
    the other axes' values (replica3 and replica1 are two lines, not one zigzag)."""
    out = []
    for axis in data["axes"]:
        xs = _numeric(m, axis) if axis in m.model.axes else None
        if not xs:
            continue
        points: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for cname, tests in data["results"].items():
            values = data["cells"].get(cname, {}).get("values", {})
            vname = values.get(axis)
            if vname not in xs:
                continue
            line = ", ".join(f"{a}={v}" for a, v in sorted(values.items()) if a != axis)
            for t, r in tests.items():
                for fig, val in r.get("figures", {}).items():
                    if isinstance(val, (int, float)):
                        points.setdefault(f"{t}: {fig}", {}).setdefault(line, []).append((xs[vname], float(val)))
        for label, series in points.items():
            out.append(_svg(f"{label} against {axis}", axis, label, series))
    return out


def _svg(title: str, xlabel: str, ylabel: str, series: dict[str, list[tuple[float, float]]]) -> str:
    """A titled plot of ``series`` (a line each, by the other axes' values) for the HTML report."""
    key = f"matrix:{title}"
    if len(series) == 1:  # one line: the legend would only repeat the title
        series = {"": next(iter(series.values()))}
    return f"<h3>{html.escape(title)}</h3>" + plots.line_plot(series, xlabel=xlabel, ylabel=ylabel, key=key)
