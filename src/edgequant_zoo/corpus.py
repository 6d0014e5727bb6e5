"""Real English text for embedding-model calibration and evaluation: stdlib docstrings.

The corpus is deterministic for a given Python version: a fixed, sorted list of standard
library modules is walked in name order, and a seeded permutation picks ``n`` docstrings.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np

__all__ = ["CALIBRATION_MODULES", "CORPUS_MODULES", "EVALUATION_MODULES", "MIN_DOCSTRING_CHARS",
           "docstring_corpus"]

# Pure-library modules with many documented public functions and classes; no module here
# has import-time side effects (unlike `this` or `antigravity`).
CORPUS_MODULES = (
    "argparse", "ast", "base64", "bisect", "calendar", "collections", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email.utils",
    "enum", "fnmatch", "fractions", "functools", "gzip", "hashlib", "heapq", "html", "inspect",
    "ipaddress", "itertools", "json", "logging", "math", "operator", "os.path", "pathlib",
    "pickle", "pprint", "queue", "random", "re", "shlex", "shutil", "statistics", "string",
    "tarfile", "tempfile", "textwrap", "threading", "tokenize", "typing", "urllib.parse",
    "uuid", "zipfile",
)  # fmt: skip

#: A disjoint split by module (every other module in name order), so calibration text and
#: evaluation text never come from the same module.
CALIBRATION_MODULES = tuple(sorted(CORPUS_MODULES)[0::2])
EVALUATION_MODULES = tuple(sorted(CORPUS_MODULES)[1::2])

# Shorter docstrings ("Return self.") carry almost no sentence content.
MIN_DOCSTRING_CHARS = 40


def _module_docstrings(module_name: str) -> list[str]:
    """Docstrings of a module and its public functions/classes/methods, in name order."""
    module = importlib.import_module(module_name)
    docs = [module.__doc__]
    for name in sorted(vars(module)):
        obj = getattr(module, name)
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        # Only objects defined here: re-exports would repeat text from other modules.
        if getattr(obj, "__module__", None) not in (module_name, module.__name__):
            continue
        docs.append(obj.__doc__)  # own __doc__, not inspect.getdoc's inherited one
        if inspect.isclass(obj):
            for attr in sorted(vars(obj)):
                member = vars(obj)[attr]
                if not attr.startswith("_") and inspect.isroutine(member):
                    docs.append(getattr(member, "__doc__", None))
    return [inspect.cleandoc(d) for d in docs if isinstance(d, str)]


def docstring_corpus(n: int = 200, seed: int = 0,
                     modules: tuple[str, ...] = CORPUS_MODULES) -> list[str]:
    """``n`` distinct standard-library docstrings, each ≥ MIN_DOCSTRING_CHARS characters.

    Same ``n`` and ``seed`` → same list in the same order (for one Python version).
    ``modules`` restricts the pool (e.g. :data:`CALIBRATION_MODULES` or
    :data:`EVALUATION_MODULES` for a disjoint split); each must be in :data:`CORPUS_MODULES`.
    """
    if n < 1:
        raise ValueError(f"docstring_corpus: n={n}; allowed is n >= 1")
    unknown = sorted(set(modules) - set(CORPUS_MODULES))
    if unknown:
        raise ValueError(f"docstring_corpus: modules {unknown} are not in CORPUS_MODULES")
    seen: set[str] = set()
    pool: list[str] = []
    for module_name in sorted(modules):
        for doc in _module_docstrings(module_name):
            if len(doc) >= MIN_DOCSTRING_CHARS and doc not in seen:
                seen.add(doc)
                pool.append(doc)
    if n > len(pool):
        raise ValueError(f"docstring_corpus: n={n} but only {len(pool)} docstrings available")
    order = np.random.default_rng(seed).permutation(len(pool))[:n]  # (n,) int64
    return [pool[i] for i in order]
