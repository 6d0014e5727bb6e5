"""Write a report dict as ``<stem>.json`` and ``<stem>.md``, each atomically.

JSON is strict (RFC 8259): non-finite floats, which JSON cannot hold, are written as the
strings ``"inf"``, ``"-inf"`` and ``"nan"`` (an SQNR of identical outputs is ``+inf``); numpy
scalars and arrays become plain numbers and lists.

Markdown layout: ``report["title"]`` (if any) as the heading, then one section per key:
a list of dicts becomes a table, a dict a two-column table (nested values as inline JSON),
anything else a line ``**key**: value``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgequant.outputs import write_text

#: Significant digits of floats in Markdown tables (JSON keeps full precision).
MD_DIGITS = 4


def to_jsonable(v: Any) -> Any:
    """Plain JSON types: numpy → Python, non-finite floats → strings, tuples → lists."""
    if isinstance(v, Mapping):
        return {str(k): to_jsonable(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return to_jsonable(v.tolist())
    if isinstance(v, list | tuple):
        return [to_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return to_jsonable(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "to_dict"):
        return to_jsonable(v.to_dict())
    return v


def format_cell(v: Any) -> str:
    """One Markdown table cell: floats to ``MD_DIGITS`` significant digits, None as ``—``."""
    if v is None:
        return "—"
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:.{MD_DIGITS}g}"
    if isinstance(v, Mapping | list | tuple | np.ndarray):
        v = json.dumps(to_jsonable(v))
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of ``rows`` (dicts) with ``columns`` (default: first row's keys)."""
    if columns is None:
        columns = list(rows[0]) if rows else []
    if not columns:
        return ""
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(format_cell(r.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(report: Mapping[str, Any]) -> str:
    """Markdown text of a report dict (layout in the module docstring)."""
    out = [f"# {report.get('title', 'edgequant report')}\n"]
    for key, value in report.items():
        if key == "title":
            continue
        if isinstance(value, list) and value and all(isinstance(x, Mapping) for x in value):
            columns: list[str] = []
            for row in value:  # union of keys, first-seen order
                columns += [k for k in row if k not in columns]
            out.append(f"## {key}\n\n{markdown_table(value, columns)}")
        elif isinstance(value, Mapping):
            body = markdown_table([{"key": k, "value": v} for k, v in value.items()])
            out.append(f"## {key}\n\n{body}" if value else f"## {key}\n\n(none)\n")
        else:
            out.append(f"**{key}**: {format_cell(value)}\n")
    return "\n".join(out)


def write_report(path_stem: str | Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md``; return both paths."""
    stem = Path(path_stem)
    if stem.suffix in (".json", ".md"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")
    text = json.dumps(to_jsonable(report), indent=2, allow_nan=False) + "\n"
    write_text(json_path, text)
    write_text(md_path, render_markdown(report))
    return json_path, md_path
