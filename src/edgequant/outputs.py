"""Output paths: checked before any work, written atomically with the user's umask.

Every file edgequant writes (models, reports, ``run`` outputs, the demo's folder) goes
through this module, in two steps:

1. :func:`plan_outputs` — before anything is loaded or computed — refuses an output that is
   (or links to) an input, equals another output, is a directory, or sits in a folder that is
   missing or not writable. Symlinks are resolved with ``os.path.realpath``; hard links are
   caught with ``os.path.samefile``.
2. :func:`atomic_write` writes through a temporary file in the target's own folder, gives it
   mode ``0o666 & ~umask`` (what ``open()`` would give), fsyncs it and ``os.replace``-s it onto
   the target. On any exception — including ``KeyboardInterrupt`` — the temporary file is
   removed and the target is left as it was.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from edgequant.errors import EdgequantError

PathLike = str | os.PathLike

_UMASK_LOCK = threading.Lock()


class OutputPathError(EdgequantError, ValueError):
    """An output path would overwrite an input or another output, or cannot be written."""


def current_umask() -> int:
    """The process umask, read without a window where it is changed when possible.

    Linux reports it in ``/proc/self/status``; elsewhere it is read by setting and restoring
    it under a lock (``os.umask`` has no read-only form).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _same(a: Path, b: Path) -> bool:
    """True if ``a`` and ``b`` name the same file (after symlinks, or as hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def check_output(path: PathLike, role: str = "output", *, folder: bool = False) -> Path:
    """``path`` as a Path once it can be written: not a directory (unless ``folder``), its
    parent folder exists and is writable. Raises :class:`OutputPathError` otherwise."""
    out = Path(os.path.abspath(path))
    shown = str(path)
    if folder:
        if out.exists() and not out.is_dir():
            raise OutputPathError(f"{role} folder {shown!r} is a file; give a folder path")
        if out.is_dir():
            if not os.access(out, os.W_OK | os.X_OK):
                raise OutputPathError(f"{role} folder {shown!r} is not writable")
            return out
    elif out.is_dir():
        raise OutputPathError(f"{role} path {shown!r} is a directory; give a file path")
    parent = out.parent
    if not parent.exists():
        raise OutputPathError(f"{role} folder {str(parent)!r} for {shown!r} does not exist")
    if not parent.is_dir():
        raise OutputPathError(f"{role} folder {str(parent)!r} for {shown!r} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{role} folder {str(parent)!r} for {shown!r} is not writable")
    return out


def _named(inputs: Iterable[PathLike | None] | Mapping[str, PathLike | None]
           ) -> list[tuple[str, Path]]:
    if isinstance(inputs, Mapping):
        return [(label, Path(p)) for label, p in inputs.items() if p is not None]
    return [("input", Path(p)) for p in inputs if p is not None]


def plan_outputs(inputs: Iterable[PathLike | None] | Mapping[str, PathLike | None] = (),
                 outputs: Mapping[str, PathLike | None] | None = None, *,
                 folders: Iterable[str] = ()) -> dict[str, Path]:
    """Check every output before any work; return role → absolute Path (``None`` skipped).

    ``inputs`` are files the command reads (a list, or label → path such as
    ``{"input model": m, "calibration data": c}`` for clearer messages); ``outputs`` maps a role (``"model"``,
    ``"report"``, ``"output"``…) to the path it writes. Roles in ``folders`` are output
    folders (the demo) and may exist as directories. An output is refused when it is, or
    links to, an input or another output, is a directory, or its folder is missing or not
    writable.
    """
    ins = _named(inputs)
    planned: dict[str, Path] = {}
    folder_roles = set(folders)
    for role, path in (outputs or {}).items():
        if path is None:
            continue
        out = check_output(path, role, folder=role in folder_roles)
        for label, src in ins:
            if _same(out, src):
                raise OutputPathError(
                    f"{role} path {str(path)!r} is the {label} {str(src)!r}"
                    f"{' (through a link)' if str(out) != os.path.abspath(src) else ''}: "
                    "it would be overwritten; choose another path")
        for other, prev in planned.items():
            if _same(out, prev):
                raise OutputPathError(f"{role} path {str(path)!r} is also the {other} path; "
                                      "give each output its own path")
        planned[role] = out
    return planned


def atomic_write(path: PathLike, write: Callable[[str], None],
                 inputs: Iterable[PathLike | None] | Mapping[str, PathLike | None] = ()) -> Path:
    """Call ``write(tmp_path)`` on a temp file next to ``path``, then rename it onto ``path``.

    The file gets mode ``0o666 & ~umask`` and is fsynced before the rename; it never lands on
    one of ``inputs`` (checked with :func:`plan_outputs`). On any exception, including
    ``KeyboardInterrupt``, the temp file is removed and ``path`` is untouched.
    """
    out = plan_outputs(inputs, {"output": path})["output"]
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        os.close(fd)
        fd = -1
        write(tmp)
        with open(tmp, "rb+") as f:  # the writer may have replaced the file: fsync what is there
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, out)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(out.parent)
    return out


def write_bytes(path: PathLike, data: bytes, inputs: Iterable[PathLike | None] = ()) -> Path:
    """:func:`atomic_write` of raw bytes."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), inputs)


def write_text(path: PathLike, text: str, inputs: Iterable[PathLike | None] = ()) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), inputs)


def write_npz(path: PathLike, arrays: Mapping, inputs: Iterable[PathLike | None] = ()) -> Path:
    """:func:`atomic_write` of ``numpy.savez`` (exactly ``path``: no ``.npz`` appended)."""
    import numpy as np

    def _save(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, _save, inputs)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
