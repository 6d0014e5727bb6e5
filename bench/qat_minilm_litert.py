"""LiteRT only: fake quant (``kernels="litert"``) vs the ``.tflite`` on LiteRT for the MiniLM
class claim, from the cached QAT state — the LiteRT rows of ``bench/qat.py --arch minilm``
without the onnxruntime / interpreter / retrieval columns (about a third of its time).

Run with ``QAT_MINILM_CACHE`` pointing at a folder holding the trained state
(``bench/qat_minilm.py``); the ``.tflite`` is exported afresh into that folder. Prints, for the
279-docstring class split and the 709-docstring wide split: identical predictions, accuracy
(fake quant / LiteRT), embeddings more than 10⁻³ apart, max |Δ|, and bit-identical rows.
``--retrieval`` adds the 512-docstring retrieval agreement.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from qat_architectures import fq_outputs
from qat_minilm import CACHE_ENV, _classes, _litert, nearest, train_head, trained


def _row(name: str, f: np.ndarray, y: np.ndarray, head, labels: np.ndarray) -> str:
    cf, cy = _classes(head, f), _classes(head, y)
    d = np.abs(f - y).max(1)
    return (f"{name}: identical {int(np.sum(cf == cy))}/{len(y)} "
            f"({100 * np.mean(cf == cy):.2f} %), accuracy fq {100 * np.mean(cf == labels):.2f} "
            f"/ LiteRT {100 * np.mean(cy == labels):.2f}, embeddings > 1e-3 apart "
            f"{int(np.sum(d > 1e-3))}, max |Δ| {d.max():.3g}, bit-identical rows "
            f"{int(np.sum(d == 0))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--retrieval", action="store_true", help="also the 512 retrieval rows")
    args = ap.parse_args()
    cache = os.environ.get(CACHE_ENV)
    if not cache:
        raise SystemExit(f"set {CACHE_ENV} to the folder holding the trained QAT state")
    from edgequant_zoo import minilm as zoo
    from edgequant_zoo.corpus_classes import wide_module_classification

    t0 = time.perf_counter()
    t = trained(cache=cache, retrieval_n=512)
    n = t.n_cls if not args.retrieval else len(t.ev[0])
    ev = tuple(a[:n] for a in t.ev)
    f = fq_outputs(t.qat, ev, 64, "litert")
    y = _litert(t.result, t.names, ev, Path(cache))
    print(_row("class (279)", f[:t.n_cls], y[:t.n_cls], t.head, t.labels), flush=True)
    if args.retrieval:
        agree = np.mean(nearest(f[t.n_cls:]) == nearest(y[t.n_cls:]))
        print(f"retrieval (512): {100 * agree:.2f} %, embeddings > 1e-3 apart "
              f"{int(np.sum(np.abs(f[t.n_cls:] - y[t.n_cls:]).max(1) > 1e-3))}", flush=True)
    w = wide_module_classification()
    feeds = zoo.tokenize(w.test_texts, seq_len=32)
    wev = tuple(feeds[k] for k in t.names)
    train = zoo.tokenize(w.train_texts, seq_len=32)
    head = train_head(t.float_embed(tuple(train[k] for k in t.names)), w.train_labels,
                      len(w.classes))
    wf = fq_outputs(t.qat, wev, 64, "litert")
    wy = _litert(t.result, t.names, wev, Path(cache))
    print(_row("wide (709)", wf, wy, head, w.test_labels), flush=True)
    print(f"{time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
