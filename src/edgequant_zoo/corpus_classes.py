"""A real classification task on the docstring corpus: which module does a docstring come from?

Classes are the modules of :data:`~edgequant_zoo.corpus.EVALUATION_MODULES` with at least
``min_docs`` docstrings, so the text never overlaps calibration or QAT training text (drawn
from :data:`~edgequant_zoo.corpus.CALIBRATION_MODULES`). Each class's docstrings are split by
a seeded permutation into a head-training half and an evaluation half (disjoint).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgequant_zoo.corpus import EVALUATION_MODULES, MIN_DOCSTRING_CHARS, _module_docstrings

__all__ = ["ModuleSplit", "module_classification"]


@dataclass(frozen=True)
class ModuleSplit:
    """Docstrings labelled by module index: ``train`` for a head, ``test`` to evaluate."""

    classes: tuple[str, ...]
    train_texts: list[str]
    train_labels: np.ndarray  # (N_train,) int64
    test_texts: list[str]
    test_labels: np.ndarray  # (N_test,) int64


def module_classification(min_docs: int = 25, seed: int = 0,
                          modules: tuple[str, ...] = EVALUATION_MODULES) -> ModuleSplit:
    """Every docstring (≥ MIN_DOCSTRING_CHARS, deduplicated) of the modules with at least
    ``min_docs`` of them, half to ``train`` and half to ``test`` per module (seeded)."""
    if min_docs < 2:
        raise ValueError(f"module_classification: min_docs={min_docs}; allowed is >= 2 "
                         "(each class needs a training and a test docstring)")
    seen: set[str] = set()
    per_module: dict[str, list[str]] = {}
    for name in sorted(modules):
        docs = [d for d in _module_docstrings(name) if len(d) >= MIN_DOCSTRING_CHARS
                and d not in seen]
        seen.update(docs)
        if len(docs) >= min_docs:
            per_module[name] = docs
    if len(per_module) < 2:
        raise ValueError(f"module_classification: only {sorted(per_module)} have >= {min_docs} "
                         "docstrings; lower min_docs")
    rng = np.random.default_rng(seed)
    tr_t, tr_y, te_t, te_y = [], [], [], []
    for label, docs in enumerate(per_module.values()):
        order = rng.permutation(len(docs))  # (n,) int64
        half = len(docs) // 2
        tr_t += [docs[i] for i in order[:half]]
        tr_y += [label] * half
        te_t += [docs[i] for i in order[half:]]
        te_y += [label] * (len(docs) - half)
    return ModuleSplit(tuple(per_module), tr_t, np.array(tr_y, np.int64), te_t,
                       np.array(te_y, np.int64))
