"""Checks on every file edgequant READS (models, calibration / evaluation data) before it
opens them: the path must be an existing regular file of a sane size.

Why: ``open()`` on a FIFO blocks forever, on ``/dev/zero`` reads without end, on a directory
fails with a platform message, and ``/proc`` files report size 0 but are not empty. A regular
file has a size we can bound before reading a byte.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edgequant.errors import EdgequantError

#: Largest model file read into memory whole (flatbuffers are read whole; ONNX protobuf
#: cannot exceed 2 GiB either — bigger ONNX models keep weights in external data files).
MAX_MODEL_BYTES = 2 * 1024**3
#: Largest calibration / evaluation data file.
MAX_DATA_BYTES = 64 * 1024**3


class InputFileError(EdgequantError, ValueError):
    """A path given to read is missing, not a regular file, empty or too large."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_input_file(path: str | os.PathLike, what: str = "file", *,
                     max_bytes: int = MAX_MODEL_BYTES) -> Path:
    """``path`` as a Path once it is an existing, non-empty regular file of at most
    ``max_bytes``; otherwise :class:`InputFileError` naming the path and what it is.

    ``/proc`` and ``/sys`` files are regular files of size 0 (their content is made on read),
    so they are refused as empty.
    """
    p = Path(path)
    try:
        st = os.stat(p)  # follows symlinks: a link to a regular file is fine
    except FileNotFoundError:
        raise InputFileError(f"{what} {str(p)!r} does not exist") from None
    except OSError as exc:
        raise InputFileError(f"{what} {str(p)!r} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"{what} {str(p)!r} is {_kind(st.st_mode)}; give a regular file")
    if st.st_size == 0:
        raise InputFileError(f"{what} {str(p)!r} is empty (0 bytes)")
    if st.st_size > max_bytes:
        raise InputFileError(f"{what} {str(p)!r} is {st.st_size:,} bytes; at most "
                             f"{max_bytes:,} bytes are allowed")
    if not os.access(p, os.R_OK):
        raise InputFileError(f"{what} {str(p)!r} is not readable (permission denied)")
    return p


def read_input_bytes(path: str | os.PathLike, what: str = "file", *,
                     max_bytes: int = MAX_MODEL_BYTES) -> bytes:
    """The whole content of a checked regular file, read at most ``max_bytes`` + 1 bytes
    (a file that grows while read is refused, not read without end)."""
    p = check_input_file(path, what, max_bytes=max_bytes)
    with open(p, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputFileError(f"{what} {str(p)!r} grew past {max_bytes:,} bytes while read")
    return data
