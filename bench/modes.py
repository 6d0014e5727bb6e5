"""Size, fidelity and latency of each edgequant recipe beside onnxruntime's own quantizers.

Models (all from ``edgequant_zoo``):

- ``tutorial_cnn``: the demo model (Conv 12 3×3 + ReLU → MaxPool → Dense 10), trained, on
  the 1000-image MNIST test split;
- ``vgg``: the ≥ 1 M-parameter VGG-style convnet, trained one epoch, same data;
- ``minilm``: all-MiniLM-L6-v2 sentence embeddings (seq 128) of 200 stdlib docstrings.

Per model and method: file size / fp32 export size; fidelity vs the fp32 export
(accuracy and top-1 agreement for classifiers, mean / min cosine of embeddings for MiniLM,
SQNR dB of the output for all); onnxruntime latency / fp32 at batch 1 and a larger batch,
medians of rounds interleaved across all methods of a model. onnxruntime rows:
``quantize_dynamic`` per channel / per tensor and ``quantize_static`` (QDQ, uint8
activations, int8 per-channel weights, MinMax) calibrated on the same samples edgequant uses.

Prints Markdown tables; writes ``bench_out/modes.json``.

    .venv/bin/python bench/modes.py [--quick] [--models tutorial_cnn,vgg,minilm] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgequant.analysis.latency import measure_interleaved
from edgequant.analysis.metrics import accuracy, cosine, sqnr_db, top1_agreement

CNN_RECIPES = ("fp32", "fp16", "w8_dynamic", "w8a8", "w8a16", "w4a16_g128")
MINILM_RECIPES = ("fp16", "w8_dynamic", "w4a16_g128")
STATIC_RECIPES = ("w8a8", "w8a16")
BASELINE = "fp32 export"
MODELS = ("tutorial_cnn", "vgg", "minilm")
OPTIONAL_MODELS = ("mobilenet",)  # depthwise + residual convnet; not in the default run

log = logging.getLogger("bench.modes")


@dataclass
class Case:
    """One model with its float file, calibration samples and evaluation samples."""

    name: str
    float_path: Path
    calib: dict[str, np.ndarray]  # input name -> (n_calib, ...) samples
    evals: dict[str, np.ndarray]  # input name -> (n_eval, ...) samples
    labels: np.ndarray | None  # (n_eval,) int64 for classifiers; None for embeddings
    recipes: tuple[str, ...]
    big_batch: int
    eval_batch: int = 100
    repeats_scale: float = 1.0  # fewer latency rounds for slow models
    notes: list[str] = field(default_factory=list)


@dataclass
class Settings:
    """Sample counts and repeats, from --quick or the defaults."""

    n_calib: int
    n_eval: int
    n_text: int
    vgg_epochs: int
    repeats_b1: int
    repeats_big: int
    threads: int


def _settings(args) -> Settings:
    if args.quick:
        return Settings(n_calib=32, n_eval=300, n_text=64, vgg_epochs=0, repeats_b1=10,
                        repeats_big=4, threads=args.threads)
    return Settings(n_calib=128, n_eval=1000, n_text=200, vgg_epochs=1, repeats_b1=40,
                    repeats_big=10, threads=args.threads)


def _mnist_cases(names, st: Settings, tmp: Path) -> list[Case]:
    import torch

    from edgequant_zoo.convnets import MobileNetLike, VGGNet, build_seeded, train_quick
    from edgequant_zoo.mnist import load_mnist
    from edgequant_zoo.tutorial_cnn import export_onnx, train_tutorial_cnn

    split = load_mnist(seed=0)
    calib = {"input": split.x_train[: st.n_calib]}  # (n_calib, 1, 28, 28) float32
    evals = {"input": split.x_test[: st.n_eval]}  # (n_eval, 1, 28, 28) float32
    example = torch.zeros(1, 1, 28, 28)
    cases = []
    for name in names:
        t0 = time.perf_counter()
        if name == "tutorial_cnn":
            module = train_tutorial_cnn(split, seed=0)
            note = "trained (default schedule)"
        else:
            module = build_seeded(VGGNet if name == "vgg" else MobileNetLike, seed=0)
            if st.vgg_epochs:
                train_quick(module, split, epochs=st.vgg_epochs)
            note = f"trained {st.vgg_epochs} epoch(s)"
        path = export_onnx(module, tmp / f"{name}.onnx", example)
        n_params = sum(p.numel() for p in module.parameters())
        cases.append(Case(name, path, calib, evals, split.y_test[: st.n_eval], CNN_RECIPES,
                          big_batch=64,
                          notes=[f"{n_params:,} parameters, {note}, "
                                 f"{time.perf_counter() - t0:.0f} s to build"]))
    return cases


def _minilm_case(st: Settings, tmp: Path) -> Case:
    from edgequant_zoo.corpus import docstring_corpus
    from edgequant_zoo.minilm import export_minilm, tokenize

    t0 = time.perf_counter()
    path = export_minilm(tmp / "minilm.onnx", seq_len=128)
    # One corpus, disjoint slices: calibration first, the evaluated docstrings after.
    n_cal = min(st.n_calib, 64)
    texts = docstring_corpus(n=n_cal + st.n_text, seed=0)
    calib = tokenize(texts[:n_cal], seq_len=128)
    evals = tokenize(texts[n_cal:], seq_len=128)
    return Case("minilm", path, calib, evals, None, MINILM_RECIPES, big_batch=8, eval_batch=20,
                repeats_scale=0.5,
                notes=[f"all-MiniLM-L6-v2, {st.n_text} docstrings at seq 128, calibration "
                       f"{n_cal}, {time.perf_counter() - t0:.0f} s to export"])


def _edgequant_variants(case: Case, out: Path) -> dict[str, Path | str]:
    """Recipe → saved QDQ model path (or an error message)."""
    from edgequant import quantize

    variants: dict[str, Path | str] = {}
    for recipe in case.recipes:
        t0 = time.perf_counter()
        try:
            qm = quantize(case.float_path, recipe,
                          calibration=case.calib if recipe in STATIC_RECIPES else None)
            variants[f"edgequant {recipe}"] = qm.save(out / f"{case.name}_eq_{recipe}.onnx")
        except Exception as exc:  # a bench reports failures as rows, it does not stop
            log.debug("edgequant %s failed:\n%s", recipe, traceback.format_exc())
            variants[f"edgequant {recipe}"] = f"{type(exc).__name__}: {exc}"
        log.info("edgequant %s on %s: %.1f s", recipe, case.name, time.perf_counter() - t0)
    return variants


class _Reader:
    """onnxruntime CalibrationDataReader over the case's calibration samples, in batches."""

    def __init__(self, feeds: dict[str, np.ndarray], batch: int) -> None:
        n = len(next(iter(feeds.values())))
        self._batches = iter(
            [{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]
        )

    def get_next(self):
        return next(self._batches, None)


def _ort_variants(case: Case, out: Path) -> dict[str, Path | str]:
    """onnxruntime's quantize_dynamic (per channel / per tensor) and quantize_static (QDQ).

    The float model first goes through ``quant_pre_process`` (ORT's own graph optimisation
    and symbolic shape inference), the documented first step of ORT quantization; without
    it quantize_dynamic trips over the exporter's value_info on Gemm weights.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out / f"{case.name}_ort_preprocessed.onnx"
    try:
        quant_pre_process(str(case.float_path), str(pre))
    except Exception as exc:
        # Symbolic shape inference gives up on some transformer graphs; ORT then
        # documents skipping it (its ONNX shape inference still runs).
        case.notes.append(f"ORT quant_pre_process: {exc}; retried with skip_symbolic_shape")
        quant_pre_process(str(case.float_path), str(pre), skip_symbolic_shape=True)
    jobs = {
        "ort dynamic per-channel": lambda p: quantize_dynamic(
            pre, p, per_channel=True, weight_type=QuantType.QInt8),
        "ort dynamic per-tensor": lambda p: quantize_dynamic(
            pre, p, per_channel=False, weight_type=QuantType.QInt8),
        "ort static QDQ per-channel": lambda p: quantize_static(
            pre, p, _Reader(case.calib, 16), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8),
    }
    variants: dict[str, Path | str] = {}
    for name, job in jobs.items():
        path = out / f"{case.name}_{name.replace(' ', '_')}.onnx"
        try:
            job(path)
            variants[name] = path
        except Exception as exc:
            log.debug("%s failed:\n%s", name, traceback.format_exc())
            variants[name] = f"{type(exc).__name__}: {exc}"
    return variants


def _session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # ORT warns about every unfused QDQ pair otherwise
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run_all(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], batch: int = 100):
    """Outputs for all samples, in chunks. Token inputs are run sorted by length and trimmed
    to each chunk's longest text: the attention mask makes the trimmed padding invisible,
    and short docstrings then cost a fraction of a full 128-token pass."""
    n = len(next(iter(feeds.values())))
    mask = feeds.get("attention_mask")
    order = np.argsort(mask.sum(1), kind="stable") if mask is not None else np.arange(n)
    outs = []
    for i in range(0, n, batch):
        idx = order[i : i + batch]
        width = int(mask[idx].sum(1).max()) if mask is not None else None
        chunk = {k: v[idx, :width] if mask is not None else v[idx] for k, v in feeds.items()}
        outs.append(sess.run(None, chunk)[0])
    result = np.empty_like(np.concatenate(outs))  # (n, K) float32
    result[order] = np.concatenate(outs)
    return result


def _measure(case: Case, variants: dict[str, Path | str], st: Settings) -> list[dict]:
    """Fidelity and latency rows; latency rounds interleave every working variant."""
    base_bytes = case.float_path.stat().st_size
    rows: list[dict] = []
    sessions: dict[str, ort.InferenceSession] = {}
    ref = None
    for method, path in variants.items():
        row: dict = {"model": case.name, "method": method}
        rows.append(row)
        if isinstance(path, str):
            row["error"] = path
            continue
        try:
            sess = _session(path, st.threads)
            out = _run_all(sess, case.evals, case.eval_batch).astype(np.float64)
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
            continue
        sessions[method] = sess
        if ref is None:
            ref = out  # the first variant is the fp32 export
        row["size_bytes"] = path.stat().st_size
        row["size_ratio"] = row["size_bytes"] / base_bytes
        row["sqnr_db"] = sqnr_db(ref, out)
        if case.labels is not None:
            row["accuracy"] = accuracy(out, case.labels)
            row["top1_agreement"] = top1_agreement(ref, out)
        else:
            cos = np.sum(ref * out, 1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(out, axis=1)
            row["cosine_mean"] = cosine(ref, out)
            row["cosine_min"] = float(cos.min())
    for batch, repeats in ((1, st.repeats_b1), (case.big_batch, st.repeats_big)):
        repeats = max(3, round(repeats * case.repeats_scale))
        case.notes.append(f"latency at batch {batch}: median of {repeats} interleaved rounds")
        feeds = {k: v[:batch] for k, v in case.evals.items()}
        runners = {m: (lambda s=s, f=feeds: s.run(None, f)) for m, s in sessions.items()}
        medians = measure_interleaved(runners, repeats=repeats, warmup=2)
        for row in rows:
            if row["method"] in medians:
                row[f"latency_ms_b{batch}"] = medians[row["method"]]
                row[f"latency_ratio_b{batch}"] = medians[row["method"]] / medians[BASELINE]
    return rows


def _fmt(v, spec: str) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and v == float("inf"):
        return "∞"
    return format(v, spec)


def _markdown(case: Case, rows: list[dict]) -> str:
    big = case.big_batch
    fid = ("accuracy", "top-1 agree") if case.labels is not None else ("cos mean", "cos min")
    keys = ("accuracy", "top1_agreement") if case.labels is not None else (
        "cosine_mean", "cosine_min")
    head = ["method", "size ratio", *fid, "SQNR dB", "lat b1 ms", "lat ratio b1",
            f"lat b{big} ms", f"lat ratio b{big}"]
    lines = [f"### {case.name}", "", *[f"_{n}_" for n in case.notes], "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    errors = []
    for r in rows:
        if "error" in r:
            errors.append(f"- {r['method']}: {r['error'][:300]}")
            lines.append(f"| {r['method']} | failed (see below) |" + " |" * (len(head) - 2))
            continue
        f = ".4f" if case.labels is None else ".3f"
        cells = [r["method"], _fmt(r["size_ratio"], ".3f"), _fmt(r.get(keys[0]), f),
                 _fmt(r.get(keys[1]), f), _fmt(r["sqnr_db"], ".1f"),
                 _fmt(r.get("latency_ms_b1"), ".3f"), _fmt(r.get("latency_ratio_b1"), ".2f"),
                 _fmt(r.get(f"latency_ms_b{big}"), ".2f"),
                 _fmt(r.get(f"latency_ratio_b{big}"), ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + (["", *errors] if errors else []))


def main(argv=None) -> int:
    """Run the benchmark; print Markdown; write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples/repeats, no VGG training")
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma list of {MODELS + OPTIONAL_MODELS}")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--out", default="bench_out/modes.json", help="JSON output path")
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    args = ap.parse_args(argv)
    # onnxruntime.quantization warns through the root logger once per tensor; keep the
    # tables readable unless asked for progress.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(MODELS + OPTIONAL_MODELS))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {MODELS + OPTIONAL_MODELS}")
    st = _settings(args)
    t_start = time.perf_counter()
    print(f"onnxruntime {ort.__version__}, {platform.machine()}, intra-op threads "
          f"{st.threads}; latency = median of rounds interleaved across a model's methods; "
          "size / latency ratios and fidelity are relative to the fp32 export\n")
    all_rows: list[dict] = []
    cases_meta = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cases = _mnist_cases([n for n in names if n != "minilm"], st, tmp)
        if "minilm" in names:
            cases.append(_minilm_case(st, tmp))
        for case in cases:
            t0 = time.perf_counter()
            variants: dict[str, Path | str] = {BASELINE: case.float_path}
            variants.update(_edgequant_variants(case, tmp))
            variants.update(_ort_variants(case, tmp))
            rows = _measure(case, variants, st)
            all_rows += rows
            case.notes.append(f"{time.perf_counter() - t0:.0f} s to quantize and measure")
            cases_meta.append({"model": case.name, "notes": case.notes,
                               "big_batch": case.big_batch,
                               "n_eval": len(next(iter(case.evals.values()))),
                               "n_calib": len(next(iter(case.calib.values())))})
            print(_markdown(case, rows), "\n", flush=True)
    total = time.perf_counter() - t_start
    print(f"total {total:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"onnxruntime": ort.__version__, "threads": st.threads, "quick": args.quick,
               "seconds": round(total, 1), "cases": cases_meta, "rows": all_rows}
    out.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
