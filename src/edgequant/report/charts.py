"""Charts for the HTML report, drawn with matplotlib and returned as inline SVG text.

Each function takes plain rows (lists of dicts, as the analysis stages write them) and
returns one ``<svg>`` element, so the report stays a single self-contained file. matplotlib
is the optional ``report`` extra; :func:`require_matplotlib` names it when it is missing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from edgequant.errors import EdgequantError

#: Colours per precision label (anything else: grey).
PRECISION_COLOURS = {"float": "#9e9e9e", "fp16": "#8e7cc3", "int16": "#3d85c6",
                     "int8": "#6aa84f", "int4": "#e69138"}
#: Longest bar chart drawn (rows beyond it are left out and said in the title).
MAX_BARS = 40


def require_matplotlib():
    """Import matplotlib with the non-interactive SVG backend, or say which extra to install."""
    try:
        import matplotlib
    except ImportError as exc:
        raise EdgequantError("the HTML report needs matplotlib: pip install 'edgequant[report]'"
                             ) from exc
    matplotlib.use("svg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _svg(fig) -> str:
    plt = require_matplotlib()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline in HTML


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str,
              colours: Sequence[str] | None = None) -> str:
    """Horizontal bars, first row on top; non-finite values are drawn as 0 and marked ``∞``."""
    plt = require_matplotlib()
    labels, values = list(labels)[:MAX_BARS], list(values)[:MAX_BARS]
    shown = [v if _finite(v) else 0.0 for v in values]
    fig, ax = plt.subplots(figsize=(6.0, 0.28 * len(labels) + 1.2))
    ys = range(len(labels))
    ax.barh(list(ys), shown, color=list(colours or ["#3d85c6"] * len(labels))[:len(labels)])
    for y, v in zip(ys, values, strict=True):
        if not _finite(v):
            ax.text(0, y, " ∞" if v == math.inf else " n/a", va="center", fontsize=8)
    ax.set_yticks(list(ys), [_short(s) for s in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def scatter_chart(points: Sequence[dict], *, x: str, y: str, xlabel: str, ylabel: str,
                  title: str, label: str = "name") -> str:
    """A scatter of ``points`` (dicts) with the Pareto front (smaller x, larger y) drawn."""
    plt = require_matplotlib()
    pts = [(p[x], p[y], str(p.get(label, ""))) for p in points if _finite(p.get(x))
           and _finite(p.get(y))]
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#3d85c6", zorder=3)
        for px, py, name in pts:
            ax.annotate(_short(name, 18), (px, py), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
        front = pareto_front([(px, py) for px, py, _ in pts])
        ax.plot([p[0] for p in front], [p[1] for p in front], color="#e69138", lw=1.2,
                ls="--", zorder=2, label="Pareto front")
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no candidate has both values", ha="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _svg(fig)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another (no other is ≤ in x and ≥ in y, one strictly), by x."""
    best: list[tuple[float, float]] = []
    for px, py in sorted(set(points), key=lambda p: (p[0], -p[1])):
        if not best or py > best[-1][1]:
            best.append((px, py))
    return best


def _short(text: str, n: int = 42) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]
