"""A small on-disk cache of analysis results (JSON files named by a content hash).

Keys hash the model bytes, the data files' bytes, the options and the edgequant version, so
a changed model, data set or option never reads a stale result. The default folder is
``$XDG_CACHE_HOME/edgequant`` (``~/.cache/edgequant``); ``cache_dir=None`` disables caching.
Files are written atomically; a corrupt file counts as a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgequant.graph.io import atomic_write

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgequant`` or ``~/.cache/edgequant``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgequant"


def feeds_digest(feeds: Mapping[str, np.ndarray] | None) -> str:
    """sha256 of arrays (names, dtypes, shapes and bytes); ``"none"`` for ``None``."""
    if feeds is None:
        return "none"
    h = hashlib.sha256()
    for name in sorted(feeds):
        a = np.ascontiguousarray(feeds[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cache_key(*parts: Any) -> str:
    """sha256 of ``parts`` (bytes as-is, everything else through JSON) and the version."""
    h = hashlib.sha256(f"edgequant {_version()}".encode())
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgequant")
    except PackageNotFoundError:
        return "unknown"


class ResultCache:
    """JSON results by key in ``folder/kind/KEY.json``; ``folder=True`` is
    :func:`default_cache_dir`, ``None`` / ``False`` caches nothing."""

    def __init__(self, folder: str | os.PathLike | bool | None) -> None:
        if folder is True:
            folder = default_cache_dir()
        self.folder = Path(folder) if folder not in (None, False) else None

    def _path(self, kind: str, key: str) -> Path:
        assert self.folder is not None
        return self.folder / kind / f"{key}.json"

    def get(self, kind: str, key: str) -> Any | None:
        """The stored result, or ``None``."""
        if self.folder is None:
            return None
        p = self._path(kind, key)
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache file %s: %s", p, exc)
            return None

    def put(self, kind: str, key: str, value: Any) -> None:
        """Store ``value`` (JSON-able)."""
        if self.folder is None:
            return
        p = self._path(kind, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(value, sort_keys=True, default=_json_default)
        atomic_write(p, lambda tmp: Path(tmp).write_text(text))


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)
