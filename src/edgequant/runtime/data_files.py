"""Data files (``DATA.npz`` / ``.npy``) opened lazily: names and headers first, arrays on demand,
samples streamed in chunks.

Opening reads the zip directory and each ``.npy`` member's header (a few hundred bytes,
decompressed from the member's start); nothing else. :meth:`DataFile.read` loads one member,
:meth:`DataFile.chunks` yields it ``size`` samples at a time from the member's stream (stored
and deflated members alike), so calibration memory stays one batch whatever the file size.
A ``.npy`` file is one member named ``""``.

What a file is gets decided from its first bytes, so a text, pickle or HDF5 file gets a line
saying so rather than numpy's "pickled data" or "context manager" errors.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from tokenize import TokenError

import numpy as np

from edgequant.errors import CalibrationError
from edgequant.input_files import MAX_DATA_BYTES, check_input_file

log = logging.getLogger(__name__)

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"
#: Largest ``.npy`` header read (numpy's own default limit).
MAX_HEADER_BYTES = 10_000


@dataclass(frozen=True)
class Member:
    """One array of a data file, known from its header alone."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool

    @property
    def nbytes(self) -> int:
        """Bytes of the array's data."""
        return math.prod(self.shape) * self.dtype.itemsize


def sniff(head: bytes) -> str:
    """What the first bytes of a file say it is: ``npz``, ``npy``, or a description."""
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP)):
        return "npz"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file"
    text = head[:48].decode("utf-8", errors="replace")  # a cut multi-byte char is no proof
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        return "a text file"
    return "a binary file of unknown format"


def _read_header(f, where: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                f, max_header_size=MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                f, max_header_size=MAX_HEADER_BYTES)
        else:
            shape, fortran, dtype = np.lib.format._read_array_header(
                f, version, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError, TokenError,
            zlib.error, TypeError, KeyError) as exc:  # numpy parses the header as Python
        raise CalibrationError(f"{where} has no readable .npy header: {exc}") from exc
    if dtype.hasobject:
        raise CalibrationError(f"{where} holds Python objects (dtype {dtype}), which would need "
                               "pickle: save numeric arrays")
    if any(int(d) < 0 for d in shape):
        raise CalibrationError(f"{where} has a negative dimension in shape {shape}")
    return tuple(int(d) for d in shape), dtype, bool(fortran)


class DataFile:
    """A ``.npz`` or ``.npy`` file opened for lazy reading; use as a context manager."""

    def __init__(self, path: str | os.PathLike, what: str = "data") -> None:
        self.path = check_input_file(path, f"{what} file", max_bytes=MAX_DATA_BYTES)
        self.what = what
        self.label = f"{what} file {str(self.path)!r}"
        with open(self.path, "rb") as f:
            head = f.read(64)
        kind = sniff(head)
        self.kind = kind
        self._zip: zipfile.ZipFile | None = None
        self._entries: dict[str, zipfile.ZipInfo] = {}
        self.members: dict[str, Member] = {}
        if kind == "npy":
            with open(self.path, "rb") as f:
                shape, dtype, fortran = _read_header(f, self.label)
                self._npy_offset = f.tell()
            self.members[""] = Member("", shape, dtype, fortran)
            self._check_size("", os.path.getsize(self.path) - self._npy_offset)
            return
        if kind != "npz":
            raise CalibrationError(f"{self.label} is {kind}, not an .npz file: save arrays with "
                                   "numpy.savez(path, input_name=array)")
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CalibrationError(f"{self.label} is not a readable .npz: {exc}") from exc
        for info in infos:
            if info.is_dir():
                continue
            name = info.filename.removesuffix(".npy")
            self._entries[name] = info
        self.names = list(self._entries)

    def _check_size(self, name: str, stored: int) -> None:
        m = self.members[name]
        if m.nbytes > stored:
            raise CalibrationError(f"{self._where(name)} is truncated: its header declares "
                                   f"{m.shape} {m.dtype} ({m.nbytes:,} bytes) but "
                                   f"{stored:,} bytes follow")

    def _where(self, name: str) -> str:
        return self.label if self.kind == "npy" else f"array {name!r} of {self.label}"

    def keys(self) -> list[str]:
        """Array names, without reading any array (``[""]`` for a ``.npy`` file)."""
        return [""] if self.kind == "npy" else list(self._entries)

    def member(self, name: str) -> Member:
        """The header of array ``name`` (reads only the start of its zip member)."""
        if name not in self.members:
            with self._open(name) as f:
                shape, dtype, fortran = _read_header(f, self._where(name))
                header = f.tell()
            self.members[name] = Member(name, shape, dtype, fortran)
            self._check_size(name, self._entries[name].file_size - header)
        return self.members[name]

    def _open(self, name: str):
        if self.kind == "npy":
            f = open(self.path, "rb")
            f.seek(self._npy_offset)
            return f
        try:
            return self._zip.open(self._entries[name])
        except (zipfile.BadZipFile, NotImplementedError, OSError, RuntimeError) as exc:
            raise CalibrationError(f"{self._where(name)} cannot be read: {exc}") from exc

    def read(self, name: str) -> np.ndarray:
        """The whole array ``name``."""
        m = self.member(name)
        return next(iter(self.chunks(name, max(1, m.shape[0] if m.shape else 1))))

    def chunks(self, name: str, size: int) -> Iterator[np.ndarray]:
        """Array ``name`` in pieces of ``size`` samples along axis 0, read from its stream
        (a Fortran-order array, or a rank-0 one, is read whole and yielded once)."""
        try:
            yield from self._chunks(name, size)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise CalibrationError(f"{self._where(name)} is corrupt: {exc}") from exc

    def _chunks(self, name: str, size: int) -> Iterator[np.ndarray]:
        m = self.member(name)
        with self._open(name) as f:
            if self.kind == "npz":
                _read_header(f, self._where(name))  # skip the header on the fresh stream
            if not m.shape or m.fortran or m.shape[0] == 0:
                yield self._decode(f.read(m.nbytes), m, m.shape, name)
                return
            row = math.prod(m.shape[1:])  # elements per sample
            for start in range(0, m.shape[0], size):
                count = min(size, m.shape[0] - start)
                shape = (count, *m.shape[1:])
                yield self._decode(f.read(count * row * m.dtype.itemsize), m, shape, name)

    def _decode(self, raw: bytes, m: Member, shape: tuple[int, ...], name: str) -> np.ndarray:
        want = math.prod(shape) * m.dtype.itemsize
        if len(raw) != want:
            raise CalibrationError(f"{self._where(name)} is truncated: got {len(raw):,} of "
                                   f"{want:,} bytes")
        arr = np.frombuffer(bytearray(raw), dtype=m.dtype)
        return arr.reshape(shape, order="F" if m.fortran else "C")

    def close(self) -> None:
        """Close the zip file."""
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> DataFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
