"""Atomic file writes shared by the weights and data writers, and the declared size of numpy files."""
from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write_bytes", "npz_bytes", "declared_array_bytes"]


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the usual permissions (0o666 less the umask), not mkstemp's private 0o600, so
    package data written this way is readable by every user of an installation.
    ``durable=True`` also flushes the file and its folder to disk (fsync) before returning, for
    a file whose existence lets other data be deleted.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if durable and hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def npz_bytes(arrays, compressed: bool = True) -> bytes:
    """The bytes of an ``.npz`` archive of ``arrays`` (a mapping of name -> array)."""
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _npy_header_bytes(fp) -> int:
    """Bytes of the array whose ``.npy`` header starts at ``fp`` (0 if the header is unreadable:
    ``np.load`` then reports the file)."""
    from numpy.lib import format as npy_format  # header parsing only: no data, no pickle

    try:
        version = npy_format.read_magic(fp)
        reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, _, dtype = reader(fp)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError):
        return 0
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def declared_array_bytes(path) -> int:
    """Bytes the arrays of a ``.npy``/``.npz`` file declare in their headers, read without the data
    (a few kB of compressed zeros can declare GBs); 0 for a file whose headers cannot be read."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                total = 0
                for info in archive.infolist():
                    if info.filename.endswith(".npy"):
                        with archive.open(info) as member:
                            total += _npy_header_bytes(member)
                return total
        with open(path, "rb") as f:
            return _npy_header_bytes(f)
    except (OSError, zipfile.BadZipFile, EOFError):
        return 0  # np.load names the unreadable file
