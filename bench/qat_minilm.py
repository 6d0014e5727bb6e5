"""Whole-graph QAT on the MiniLM sentence embedder (``bench/qat.py --arch minilm``).

all-MiniLM-L6-v2 (real weights), plain w8a8 — the plan ``edgequant.quantize`` resolves,
transformer rules included — label-free MSE distillation on docstrings of
``CALIBRATION_MODULES``. Two predictions on text of the disjoint ``EVALUATION_MODULES``,
fake quant (each engine's integer kernels emulated, ``GraphQAT.kernels``) vs each engine:

* **class** (the claim): a linear head trained on the *float* model's embeddings of one half
  of the docstrings of the evaluation modules with ≥ 25 docstrings predicts the module of the
  other half (``edgequant_zoo.corpus_classes``); every engine's embeddings go through that
  one head;
* **retrieval** (harsher, context): each of 512 docstrings' nearest other one by cosine, every
  engine on its own embeddings — a near-tie among near-duplicate docstrings, where one flipped
  LSB changes the answer.

Max LSB: integer codes of the last int8 MatMul output (real tokens), fake quant vs each
engine's QuantizeLinear (onnxruntime, reference interpreter; LiteRT does not expose it).
Figures are quoted in ``bench/qat.py``'s docstring.

Set ``QAT_MINILM_CACHE=/tmp/minilm`` to keep the trained QAT state (``state_dict``, keyed by
recipe, steps, batch, sequence length and lr) and the converted ``.onnx`` / ``.tflite`` in that
folder: later runs load the state instead of training (the table then reports the training
time of the run that wrote it as 0 s).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from qat_architectures import _run, cosine, deployed_outputs, fq_outputs, fq_per_engine, holds

import edgequant
import edgequant.torch as eqt
from edgequant.export.qop.lower import lower_to_qop
from edgequant.recipes.builtin import get_recipe
from edgequant.runtime.runners import open_runner
from edgequant.torch.capture import capture, qat_from_capture


def train_head(emb: np.ndarray, labels: np.ndarray, classes: int, steps: int = 400,
               seed: int = 0) -> torch.nn.Linear:
    """Multinomial logistic regression on (N, D) float embeddings (full batch, Adam)."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(emb.shape[1], classes)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    x, y = torch.from_numpy(emb), torch.from_numpy(labels)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(x), y).backward()
        opt.step()
    return head.eval()


def _classes(head: torch.nn.Linear, emb: np.ndarray) -> np.ndarray:
    return _logits(head, emb).argmax(1)


def nearest(e: np.ndarray) -> np.ndarray:
    """Each row's nearest other row by cosine (the retrieval prediction)."""
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sim = e @ e.T  # (N, N) cosine
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


#: environment variable naming a folder for the trained state and the converted models
CACHE_ENV = "QAT_MINILM_CACHE"


@dataclass
class Trained:
    """The QAT-trained MiniLM and everything its evaluation reads (:func:`trained`)."""

    qat: object                  # GraphQAT, trained, eval mode
    result: object               # eqt.convert(qat): the QDQ model
    names: list[str]             # graph input order
    ev: tuple[np.ndarray, ...]   # evaluation inputs: class test set, then the retrieval set
    n_cls: int                   # rows of the class test set at the start of ``ev``
    head: torch.nn.Linear        # trained on float embeddings of the head-training half
    labels: np.ndarray           # (n_cls,) module of each test docstring
    classes: list[str]
    head_train: int
    ref: np.ndarray              # float embeddings of ``ev``
    ptq_e: np.ndarray            # PTQ model's embeddings of ``ev`` (onnxruntime)
    rec: object
    train_seconds: float
    t0: float
    float_embed: object          # (inputs in graph order) -> (N, D) float embeddings


def trained(recipe: str = "w8a8", steps: int = 40, batch: int = 8, seq_len: int = 32,
            retrieval_n: int = 512, lr: float = 1e-5, cache: str | Path | None = None
            ) -> Trained:
    """Capture, PTQ, QAT-train (or load the cached state) and convert all-MiniLM-L6-v2.

    ``cache`` (default: ``$QAT_MINILM_CACHE``): a folder where the trained QAT state is saved
    after training, or loaded from instead of training.
    """
    cache = cache or os.environ.get(CACHE_ENV)
    from edgequant_zoo import minilm as zoo
    from edgequant_zoo.corpus import CALIBRATION_MODULES, EVALUATION_MODULES, docstring_corpus
    from edgequant_zoo.corpus_classes import module_classification
    from edgequant_zoo.qat_models import minilm_module

    teacher = minilm_module()
    split = module_classification()
    tr = zoo.tokenize(docstring_corpus(steps * batch, seed=0, modules=CALIBRATION_MODULES),
                      seq_len=seq_len)
    n_cls = len(split.test_texts)  # evaluation rows: class test set, then the retrieval set
    ev_feeds = zoo.tokenize(split.test_texts + docstring_corpus(
        retrieval_n, seed=0, modules=EVALUATION_MODULES), seq_len=seq_len)
    head_feeds = zoo.tokenize(split.train_texts, seq_len=seq_len)
    t0 = time.perf_counter()
    cap = capture(teacher, tuple(torch.from_numpy(tr[n][:2]) for n in zoo.MINILM_INPUTS))
    names = [i.name for i in cap.graph.graph.input]
    train = tuple(tr[n] for n in names)
    ev = tuple(ev_feeds[n] for n in names)
    cal = {n: a[:64] for n, a in zip(names, train, strict=True)}
    rec = get_recipe(recipe)
    qat = qat_from_capture(cap, rec, calibration=cal)
    student_order = _Reordered(teacher, names)

    def float_embed(arrays):
        with torch.no_grad():
            return np.concatenate([student_order(*(torch.from_numpy(a[s:s + 64]) for a in arrays))
                                   .numpy() for s in range(0, len(arrays[0]), 64)])

    ref = float_embed(ev)
    head = train_head(float_embed(tuple(head_feeds[n] for n in names)), split.train_labels,
                      len(split.classes))
    ptq = edgequant.quantize(cap.graph, rec, calibration=cal)
    ptq_e = _run(open_runner(ptq.model), names, ev, 64)
    loader = [tuple(torch.from_numpy(a[s:s + batch]) for a in train)
              for s in range(0, len(train[0]), batch)]
    state = (Path(cache) / f"qat_{rec.name}_s{steps}_b{batch}_l{seq_len}_lr{lr:g}.pt"
             if cache else None)
    t1 = time.perf_counter()
    if state is not None and state.exists():
        qat.load_state_dict(torch.load(state, weights_only=True))
    else:
        eqt.fit_qat(qat, loader, teacher=student_order, labels=False, distill="mse", lr=lr,
                    show_progress=False, freeze_observers_step=steps // 2)
        if state is not None:
            state.parent.mkdir(parents=True, exist_ok=True)
            torch.save(qat.state_dict(), state.with_suffix(".tmp"))
            state.with_suffix(".tmp").replace(state)  # atomic
    train_s = time.perf_counter() - t1
    qat.eval()
    return Trained(qat, eqt.convert(qat), names, ev, n_cls, head, split.test_labels,
                   list(split.classes), len(split.train_texts), ref, ptq_e, rec, train_s, t0,
                   float_embed)


def minilm(recipe: str = "w8a8", steps: int = 40, batch: int = 8, seq_len: int = 32,
           retrieval_n: int = 512, lr: float = 1e-5, reference_n: int = 64,
           cache: str | Path | None = None, wide: bool = True) -> dict:
    """PTQ vs QAT (cosine to float, head accuracy) and deployed-vs-trained agreement
    (``cache``: see :func:`trained`; the converted models are written there too; ``wide``:
    the class claim also on :func:`wide_class_rows`' larger test set)."""
    cache = cache or os.environ.get(CACHE_ENV)
    t = trained(recipe, steps, batch, seq_len, retrieval_n, lr, cache)
    qat, result, names, ev, n_cls, head, labels = (t.qat, t.result, t.names, t.ev, t.n_cls,
                                                   t.head, t.labels)
    ref, ptq_e, rec, train_s, t0 = t.ref, t.ptq_e, t.rec, t.train_seconds, t.t0
    fq = fq_per_engine(qat, ev)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(cache) if cache else Path(tmp)
        outs = deployed_outputs(result, names, ev, work, reference_n=reference_n,
                                tflite=False)
        outs["litert"] = _litert(result, names, ev, work)
        if cache:
            result.save(work / "model_qdq.onnx")
        wide_rows, wide_classes = wide_class_rows(t, work, seq_len) if wide else ([], 0)
    last, codes = last_quantized_codes(qat, result.model, names, ev, reference_n)
    real = ev[names.index("attention_mask")].astype(bool)  # (N, S): pooling reads only these

    def lsb(a: np.ndarray, b: np.ndarray) -> float:  # padded positions never reach the output
        n = min(len(a), len(b))
        return float(np.max(np.abs(a[:n] - b[:n])[real[:n]]))

    def row(engine: str, f: np.ndarray, y: np.ndarray) -> dict:
        n = min(len(y), n_cls)
        r = {"engine": engine, "n": n,
             "agree": 100 * float(np.mean(_classes(head, f[:n]) == _classes(head, y[:n]))),
             "acc_fq": 100 * float(np.mean(_classes(head, f[:n]) == labels[:n])),
             "acc": 100 * float(np.mean(_classes(head, y[:n]) == labels[:n])),
             "max_abs": float(np.max(np.abs(f[:len(y)] - y))),
             "min_cos": float(np.min(cosine(f[:len(y)], y)))}
        if len(y) > n_cls:  # retrieval among the 512, each engine on its own embeddings
            r["retrieval"] = 100 * float(np.mean(nearest(f[n_cls:len(y)]) == nearest(y[n_cls:])))
        return r

    rows = []
    for engine, y in outs.items():
        if isinstance(y, str):
            rows.append({"engine": engine, "note": y})
            continue
        rows.append(row(engine, fq[engine], y))
        if engine in codes:
            rows[-1]["max_lsb"] = lsb(codes["fake quant"], codes[engine])
    ort = outs["onnxruntime"]
    if not isinstance(outs["reference"], str):  # the two deployed engines against each other
        rf = outs["reference"]
        floor = row("reference vs onnxruntime", ort[:len(rf)], rf)
        floor["max_lsb"] = lsb(codes["onnxruntime"], codes["reference"])
        rows.append({**floor, "context": True})
    rows += wide_rows
    float_ops = sorted({d.op_type for d in qat.plan.float_nodes()})
    return {"recipe": rec.name, "ptq_cos": float(np.mean(cosine(ptq_e, ref))),
            "qat_cos": float(np.mean(cosine(ort, ref))),
            "qat_fq_cos": float(np.mean(cosine(fq["onnxruntime"], ref))), "rows": rows,
            "classes": len(t.classes), "head_train": t.head_train, "wide_classes": wide_classes,
            "acc_float": 100 * float(np.mean(_classes(head, ref[:n_cls]) == labels)),
            "acc_ptq": 100 * float(np.mean(_classes(head, ptq_e[:n_cls]) == labels)),
            "acc_qat": 100 * float(np.mean(_classes(head, ort[:n_cls]) == labels)),
            "last_quantized": last, "float_ops": float_ops,
            "holds": holds(rows, acc=True), "train_seconds": train_s, "steps": steps,
            "batch": batch, "seconds": time.perf_counter() - t0}


def wide_class_rows(t: Trained, workdir: Path, seq_len: int = 32) -> tuple[list[dict], int]:
    """The class claim on the wider split (``wide_module_classification``: 34 modules, 709 test
    docstrings, none in the head's training half or the QAT text): a head trained on the float
    embeddings of its own training half; fake quant vs onnxruntime and LiteRT (the reference
    interpreter is too slow for 709 sequences). Flipped rows list both engines' head margins
    (top-1 − top-2 logit) in ``note``. Returns (rows, number of classes)."""
    from edgequant_zoo import minilm as zoo
    from edgequant_zoo.corpus_classes import wide_module_classification

    w = wide_module_classification()
    feeds = zoo.tokenize(w.test_texts, seq_len=seq_len)
    ev = tuple(feeds[n] for n in t.names)
    train = zoo.tokenize(w.train_texts, seq_len=seq_len)
    head = train_head(t.float_embed(tuple(train[n] for n in t.names)), w.train_labels,
                      len(w.classes))
    fq = fq_per_engine(t.qat, ev)
    outs = {"onnxruntime": _run(open_runner(t.result.model), t.names, ev, 64),
            "litert": _litert(t.result, t.names, ev, workdir)}
    rows = []
    for engine, y in outs.items():
        if isinstance(y, str):
            rows.append({"engine": f"{engine} (wide)", "note": y})
            continue
        f = fq[engine]
        lf, ly = _logits(head, f), _logits(head, y)  # (N, classes)
        flips = np.nonzero(lf.argmax(1) != ly.argmax(1))[0]
        rows.append({"engine": f"{engine} (wide)", "n": len(y),
                     "agree": 100 * float(np.mean(lf.argmax(1) == ly.argmax(1))),
                     "acc_fq": 100 * float(np.mean(lf.argmax(1) == w.test_labels)),
                     "acc": 100 * float(np.mean(ly.argmax(1) == w.test_labels)),
                     "max_abs": float(np.max(np.abs(f - y))),
                     "min_cos": float(np.min(cosine(f, y))),
                     "note": "; ".join(f"flip {i}: margin {_margin(lf[i]):.3g} / "
                                       f"{_margin(ly[i]):.3g}" for i in flips)})
    return rows, len(w.classes)


def _logits(head: torch.nn.Linear, emb: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.from_numpy(np.ascontiguousarray(emb, np.float32))).numpy()


def _margin(logits: np.ndarray) -> float:
    """Top-1 minus top-2 logit of one row (how far the prediction is from flipping)."""
    top = np.sort(logits)[::-1]
    return float(top[0] - top[1])


def _litert(result, names: list[str], inputs: tuple[np.ndarray, ...], workdir: Path
            ) -> np.ndarray | str:
    """LiteRT outputs of the converted model, or ``"not exportable: <reason>"``."""
    from edgequant.errors import EdgequantError

    fixed = {}  # named dynamic dims (e.g. the sequence) sized like the evaluation inputs
    for vi in result.model.graph.input:
        if vi.name in names:
            x = inputs[names.index(vi.name)]
            for axis, dim in enumerate(vi.type.tensor_type.shape.dim):
                if dim.dim_param and axis > 0:
                    fixed[dim.dim_param] = int(x.shape[axis])
    try:
        path = result.save(workdir / "model.tflite", fixed_dims=fixed or None)
    except (EdgequantError, ValueError, TypeError) as exc:
        return f"not exportable: {str(exc).split(' (supported')[0]}"  # reason, not op list
    return _run(open_runner(path), names, inputs, 16)


def last_quantized_codes(qat, model, names: list[str], inputs: tuple[np.ndarray, ...],
                         reference_n: int) -> tuple[str, dict[str, np.ndarray]]:
    """Integer codes (N, S, C) of the last int8 MatMul output (the deepest quantized GEMM)
    per engine.

    Fake quant: ``round(x / scale) + zero_point`` of the eval forward's value (onnxruntime's
    kernels emulated); deployed: the output of that tensor's QuantizeLinear in the converted
    model (made a graph output), run by onnxruntime and by the interpreter on the integer-only
    lowering.
    """
    acts = qat.activation_qparams()
    mm = [n.output[0] for n in qat.graph.graph.node
          if n.op_type == "MatMul" and n.output[0] in acts]
    last = mm[-1]
    qp = acts[last]
    scale, zp = float(np.ravel(qp.scale)[0]), int(np.ravel(qp.zero_point)[0])
    keep = list(qat.output_names)
    qat.output_names = [last]
    try:
        x = fq_outputs(qat, inputs)
    finally:
        qat.output_names = keep
    codes = {"fake quant": np.round(x.astype(np.float64) / scale) + zp}
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == last)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    zp_type = next(t.data_type for t in model.graph.initializer if t.name == q.input[2])
    probe.graph.output.append(onnx.helper.make_tensor_value_info(q.output[0], zp_type, None))
    codes["onnxruntime"] = _run(open_runner(probe), names, inputs, 64).astype(np.float64)
    small = tuple(a[:reference_n] for a in inputs)
    # the interpreter runs the integer-only lowering, as for the embeddings
    codes["reference"] = _run(open_runner(lower_to_qop(probe), "reference"), names, small, 16
                              ).astype(np.float64)
    return last, codes


class _Reordered(torch.nn.Module):
    """The teacher called with the QAT graph's input order."""

    def __init__(self, module: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        from edgequant_zoo.minilm import MINILM_INPUTS

        self.module = module
        self.order = [names.index(n) for n in MINILM_INPUTS]

    def forward(self, *args):
        return self.module(*(args[i] for i in self.order))
