"""``edgequant compare``: size, fidelity, accuracy and latency of models against a reference.

Every model (``.onnx`` or ``.tflite``, float or integer I/O) runs on the same float feeds
through :func:`edgequant.runtime.runners.open_runner` and
:func:`edgequant.runtime.batching.run_batched`. Fidelity is measured on the *first* output
against the reference's first output (the row's ``cosine``, ``sqnr_db``, ``top1_agreement``
and ``accuracy``); when the models have several outputs, every output pair is also compared
and kept in ``CompareRow.outputs`` (name → ``{"cosine", "sqnr_db"}``), which
:func:`rows_to_json` leaves out so its fields stay fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgequant.analysis.latency import measure_interleaved
from edgequant.analysis.metrics import accuracy, cosine, sqnr_db, top1_agreement
from edgequant.inspect.model import model_file_bytes
from edgequant.runtime.batching import num_samples, run_batched
from edgequant.runtime.runner import Runner, match_feeds
from edgequant.runtime.runners import open_runner

log = logging.getLogger(__name__)

#: Fields of :func:`rows_to_json` rows, in order.
ROW_FIELDS = (
    "model",
    "bytes",
    "size_ratio",
    "accuracy",
    "top1_agreement",
    "cosine",
    "sqnr_db",
    "latency_ms",
    "speedup",
)


@dataclass
class CompareRow:
    """One model's line in the comparison (the reference's own row has ratio/speedup 1.0)."""

    model: str
    bytes: int
    size_ratio: float
    accuracy: float | None
    top1_agreement: float
    cosine: float
    sqnr_db: float
    latency_ms: float | None
    speedup: float | None
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)


def _match_outputs(ref: Runner, other: Runner) -> list[tuple[int, int, str]]:
    """(reference index, model index, name) pairs: by name when all names exist, else by
    position."""
    if all(n in other.output_names for n in ref.output_names):
        return [(i, other.output_names.index(n), n) for i, n in enumerate(ref.output_names)]
    k = min(len(ref.output_names), len(other.output_names))
    return [(i, i, ref.output_names[i]) for i in range(k)]


def _display_names(paths: Sequence[Path]) -> list[str]:
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def compare(
    reference_path: str | Path,
    model_paths: Sequence[str | Path],
    feeds: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
    batch_size: int = 32,
    latency_repeats: int = 20,
    latency_warmup: int = 3,
    threads: int | None = None,
) -> list[CompareRow]:
    """Compare ``model_paths`` to ``reference_path`` on ``feeds`` (first axis = samples).

    Returns the reference's row first, then one row per model. ``latency_ms`` is the median
    batch-1 latency over ``latency_repeats`` interleaved rounds (``0`` skips timing: latency
    and speedup are then ``None``) of the model itself: feeds are converted to its input
    types beforehand, outputs stay raw. ``labels`` (N,) enables ``accuracy``.
    """
    paths = [Path(reference_path), *(Path(p) for p in model_paths)]
    names = _display_names(paths)
    runners = [open_runner(p, threads=threads) for p in paths]
    n = num_samples(feeds)
    if labels is not None and np.asarray(labels).reshape(-1).shape[0] != n:
        raise ValueError(f"{np.asarray(labels).size} labels for {n} samples: counts must match")
    outputs = [run_batched(r, match_feeds(r, feeds), batch_size) for r in runners]  # per model: list (N, ...)

    latencies: dict[str, float] = {}
    if latency_repeats > 0:
        calls: dict[str, Callable[[], object]] = {}
        for name, r in zip(names, runners, strict=True):
            one = {k: np.asarray(v[:1]) for k, v in match_feeds(r, feeds).items()}
            raw = r.prepare_feeds(one)  # time the model alone, not our float → int8 conversion
            calls[name] = lambda r=r, raw=raw: r.run(raw, raw=True)
        latencies = measure_interleaved(calls, repeats=latency_repeats, warmup=latency_warmup)

    ref_bytes = model_file_bytes(paths[0])
    ref_out = outputs[0]
    rows = []
    for name, path, r, outs in zip(names, paths, runners, outputs, strict=True):
        pairs = _match_outputs(runners[0], r)
        if not pairs:
            raise ValueError(f"model {name!r} has no output to compare with the reference")
        per_output = {
            oname: {
                "cosine": cosine(ref_out[i], outs[j]),
                "sqnr_db": sqnr_db(ref_out[i], outs[j]),
            }
            for i, j, oname in pairs
        }
        i0, j0, _ = pairs[0]
        size = model_file_bytes(path)
        lat = latencies.get(name)
        ref_lat = latencies.get(names[0])
        rows.append(
            CompareRow(
                model=name,
                bytes=size,
                size_ratio=ref_bytes / size,
                accuracy=accuracy(outs[j0], labels) if labels is not None else None,
                top1_agreement=top1_agreement(ref_out[i0], outs[j0]),
                cosine=cosine(ref_out[i0], outs[j0]),
                sqnr_db=sqnr_db(ref_out[i0], outs[j0]),
                latency_ms=lat,
                speedup=(ref_lat / lat) if lat and ref_lat else None,
                outputs=per_output if len(pairs) > 1 else {},
            )
        )
    return rows


def rows_to_json(rows: Sequence[CompareRow]) -> list[dict]:
    """Rows as plain dicts with exactly :data:`ROW_FIELDS` (floats stay floats; ``inf`` for
    identical outputs' SQNR — :func:`edgequant.report.render.write_report` encodes it)."""
    return [{f: getattr(r, f) for f in ROW_FIELDS} for r in rows]
