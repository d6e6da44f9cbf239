"""Plots of parameter importance: a PNG (matplotlib, imported only here) or a self-contained
HTML page with inline SVG (no scripts, no CDN)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..errors import UsageError


def write_plot(doc: dict[str, Any], path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".png":
        _png(doc, path)
    elif suffix in (".html", ".htm"):
        path.write_text(_html(doc))
    else:
        raise UsageError(f"--plot {path}: give a .png or .html file")


def _png(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = doc["params"]
    shown = params[:6]
    fig = plt.figure(figsize=(11, 4.2 + 2.6 * ((len(shown) + 2) // 3)), dpi=110)
    grid = fig.add_gridspec(1 + (len(shown) + 2) // 3, 3, height_ratios=[1.6] + [1] * (
        (len(shown) + 2) // 3))
    ax = fig.add_subplot(grid[0, :])
    names = [p["name"] for p in params][::-1]
    scores = [p["importance"] for p in params][::-1]
    bars = ax.barh(names, scores, color="#3b7dd8", height=0.5)
    ax.bar_label(bars, labels=[f"{s:.0%}" for s in scores], padding=3)
    ax.set_xlim(0, max([*scores, 0.05]) * 1.2)
    ax.set_xlabel(f"share of {doc['metric']} variance explained (epsilon-squared)")
    ax.set_title(f"Parameter importance for {doc['metric']} over {doc['runs']} runs "
                 f"(unexplained by main effects: {doc['unexplained']:.0%})")
    for i, p in enumerate(shown):
        sub = fig.add_subplot(grid[1 + i // 3, i % 3])
        xs = [pt[0] for pt in p["points"]]
        ys = [pt[1] for pt in p["points"]]
        if p["kind"].startswith("numeric") and all(isinstance(x, int | float) for x in xs):
            sub.scatter(xs, ys, s=14, alpha=0.7, color="#3b7dd8")
            if min(xs) > 0 and max(xs) / min(xs) > 50:
                sub.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            sub.scatter([labels.index(str(x)) for x in xs], ys, s=14, alpha=0.7,
                        color="#3b7dd8")
            sub.set_xticks(range(len(labels)), labels)
        sub.set_xlabel(p["name"])
        sub.set_ylabel(doc["metric"])
        sub.set_title(f"{p['importance']:.0%}" + (f", rho {p['spearman']:+.2f}"
                                                  if p["spearman"] is not None else ""),
                      fontsize=9)
    fig.text(0.01, 0.005, "method: " + doc["method"], fontsize=7, color="#555", wrap=True)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def _html(doc: dict[str, Any]) -> str:
    esc = html.escape
    width, bar_h = 640, 26
    rows = doc["params"]
    top = max([p["importance"] for p in rows] + [0.05])
    bars = []
    for i, p in enumerate(rows):
        w = int((width - 220) * p["importance"] / top)
        y = 10 + i * bar_h
        bars.append(f'<text x="150" y="{y + 17}" text-anchor="end">{esc(p["name"])}</text>'
                    f'<rect x="160" y="{y + 4}" width="{w}" height="{bar_h - 8}" '
                    f'fill="#3b7dd8"><title>{esc(p["name"])}: {p["importance"]:.3f}</title>'
                    f'</rect><text x="{165 + w}" y="{y + 17}">{p["importance"]:.0%}</text>')
    chart = (f'<svg width="{width}" height="{20 + bar_h * len(rows)}" '
             f'font-family="sans-serif" font-size="13">{"".join(bars)}</svg>')
    scatters = "".join(_scatter_svg(p, doc["metric"]) for p in rows[:6])
    table = "".join(_table_row(p) for p in rows)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Parameter importance: {esc(doc['metric'])}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}td,th{{padding:2px 10px;
text-align:left}}.note{{color:#555;font-size:90%}}svg{{margin:4px}}</style></head><body>
<h1>Parameter importance for {esc(doc['metric'])}</h1>
<p>{doc['runs']} runs; mean {doc['metric_mean']:.6g}, std {doc['metric_std']:.3g}.
Unexplained by main effects (interactions and noise): {doc['unexplained']:.0%}.</p>
{chart}
<h2>{esc(doc['metric'])} against each parameter</h2><div>{scatters}</div>
<h2>Numbers</h2><table><tr><th>param</th><th>kind</th><th>levels</th><th>importance</th>
<th>eta&sup2;</th><th>spearman</th></tr>{table}</table>
<p class="note">Method: {esc(doc['method'])}.</p></body></html>
"""


def _table_row(p: dict[str, Any]) -> str:
    rho = "" if p["spearman"] is None else f"{p['spearman']:+.3f}"
    return (f"<tr><td>{html.escape(p['name'])}</td><td>{html.escape(p['kind'])}</td>"
            f"<td>{p['levels']}</td><td>{p['importance']:.4f}</td>"
            f"<td>{p['eta_squared']:.4f}</td><td>{rho}</td></tr>")


def _scatter_svg(p: dict[str, Any], metric: str) -> str:
    w, h, pad = 260, 180, 30
    pts = [(x, y) for x, y in p["points"] if y is not None]
    numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x, _ in pts)
    labels = sorted({str(x) for x, _ in pts})
    xs = [float(x) if numeric else float(labels.index(str(x))) for x, _ in pts]
    ys = [y for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)

    def sx(v: float) -> float:
        return pad + (w - 2 * pad) * ((v - x0) / (x1 - x0) if x1 > x0 else 0.5)

    def sy(v: float) -> float:
        return h - pad - (h - 2 * pad) * ((v - y0) / (y1 - y0) if y1 > y0 else 0.5)

    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#3b7dd8" '
                   f'fill-opacity="0.7"/>' for x, y in zip(xs, ys, strict=True))
    ticks = "" if numeric else "".join(
        f'<text x="{sx(i):.1f}" y="{h - 12}" text-anchor="middle" font-size="10">'
        f"{html.escape(lab)}</text>" for i, lab in enumerate(labels))
    return (f'<svg width="{w}" height="{h}" font-family="sans-serif" font-size="11">'
            f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" '
            f'fill="none" stroke="#ccc"/>{dots}{ticks}'
            f'<text x="{w / 2}" y="14" text-anchor="middle">{html.escape(p["name"])} '
            f'({p["importance"]:.0%})</text><text x="4" y="{pad - 4}" font-size="9">'
            f'{html.escape(metric)} {y1:.3g}</text><text x="4" y="{h - pad + 12}" '
            f'font-size="9">{y0:.3g}</text></svg>')
