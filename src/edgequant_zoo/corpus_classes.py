"""A real classification task on the docstring corpus: which module does a docstring come from?

Classes are the modules of :data:`~edgequant_zoo.corpus.EVALUATION_MODULES` with at least
``min_docs`` docstrings, so the text never overlaps calibration or QAT training text (drawn
from :data:`~edgequant_zoo.corpus.CALIBRATION_MODULES`). Each class's docstrings are split by
a seeded permutation into a head-training half and an evaluation half (disjoint).

:func:`wide_module_classification` adds :data:`EXTRA_CLASS_MODULES` (standard-library modules
outside :data:`~edgequant_zoo.corpus.CORPUS_MODULES`) for a larger test set — 34 classes
instead of 11 — and drops every docstring that also occurs in a calibration module, so head
text, test text and the QAT distillation text stay disjoint.

Both splits read the modules' *current* attributes: importing ``transformers`` adds three
documented methods to ``logging.Logger`` (an evaluation module), so a process that has
imported it (the MiniLM bench) sees 709 wide test docstrings where a bare one sees 708.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgequant_zoo.corpus import (
    CALIBRATION_MODULES,
    EVALUATION_MODULES,
    MIN_DOCSTRING_CHARS,
    _module_docstrings,
)

__all__ = ["EXTRA_CLASS_MODULES", "ModuleSplit", "module_classification",
           "wide_module_classification"]

#: Standard-library modules with ≥ 25 docstrings of ≥ MIN_DOCSTRING_CHARS (Python 3.11), none in
#: CORPUS_MODULES and none with import-time side effects; private (``_pyio``, ``_pydecimal``:
#: copies of public docstrings) and GUI modules (``tkinter``, ``turtle``: 10x the others) left out.
EXTRA_CLASS_MODULES = (
    "asyncio.events", "codecs", "collections.abc", "doctest", "email.message", "ftplib",
    "http.cookiejar", "http.server", "imaplib", "importlib.metadata", "logging.config",
    "logging.handlers", "mailbox", "pickletools", "pydoc", "smtplib", "socketserver", "ssl",
    "symtable", "traceback", "unicodedata", "unittest.case", "urllib.request",
    "xml.etree.ElementTree", "xml.sax.handler",
)  # fmt: skip


@dataclass(frozen=True)
class ModuleSplit:
    """Docstrings labelled by module index: ``train`` for a head, ``test`` to evaluate."""

    classes: tuple[str, ...]
    train_texts: list[str]
    train_labels: np.ndarray  # (N_train,) int64
    test_texts: list[str]
    test_labels: np.ndarray  # (N_test,) int64


def module_classification(min_docs: int = 25, seed: int = 0,
                          modules: tuple[str, ...] = EVALUATION_MODULES,
                          exclude: tuple[str, ...] = (), distinct: bool = False) -> ModuleSplit:
    """Every docstring (≥ MIN_DOCSTRING_CHARS, deduplicated) of the modules with at least
    ``min_docs`` of them, half to ``train`` and half to ``test`` per module (seeded).
    Docstrings that also occur in a module of ``exclude`` are dropped first; ``distinct``
    also drops repeats inside one module (which otherwise can land in both halves: the
    default keeps the original 11-class split unchanged)."""
    if min_docs < 2:
        raise ValueError(f"module_classification: min_docs={min_docs}; allowed is >= 2 "
                         "(each class needs a training and a test docstring)")
    seen: set[str] = {d for name in exclude for d in _module_docstrings(name)}
    per_module: dict[str, list[str]] = {}
    for name in sorted(modules):
        docs = [d for d in _module_docstrings(name) if len(d) >= MIN_DOCSTRING_CHARS
                and d not in seen]
        if distinct:
            docs = list(dict.fromkeys(docs))
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


def wide_module_classification(min_docs: int = 25, seed: int = 0) -> ModuleSplit:
    """:func:`module_classification` over EVALUATION_MODULES + EXTRA_CLASS_MODULES, without
    any docstring of CALIBRATION_MODULES (the text QAT distils on) and without repeats."""
    return module_classification(min_docs, seed, EVALUATION_MODULES + EXTRA_CLASS_MODULES,
                                 exclude=CALIBRATION_MODULES, distinct=True)
