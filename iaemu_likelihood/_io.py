"""File helpers shared by every writer and reader: atomic writes, SHA-256 of a file, strict JSON,
and the declared size of numpy files."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import WeightsIntegrityError

__all__ = ["atomic_write_bytes", "npz_bytes", "declared_array_bytes", "sha256_file", "read_json_file",
           "unique_json_keys"]


def expand_user_path(value) -> str:
    """``~`` and ``$VARIABLES`` of a path given in a config (yaml, ini, CLI) expanded, as a string."""
    return os.path.expandvars(os.path.expanduser(str(value)))


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


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unique_json_keys(pairs) -> dict:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise ValueError(f"key {key!r} appears {keys.count(key)} times in one object")
    return dict(pairs)


def read_json_file(path):
    """Parse a JSON file of a weights folder strictly.

    A key twice in one object (which plain ``json`` resolves silently, last one wins), nesting
    too deep to parse, bad UTF-8 and unreadable files are refused. ``NaN``/``Infinity`` parse
    (as Python writes them) and are refused by the checks of the field that holds them.

    Raises
    ------
    WeightsIntegrityError
        One line naming the file and the problem.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=unique_json_keys)
    except (OSError, ValueError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors

        text = "nesting too deep" if isinstance(exc, RecursionError) else " ".join(str(exc).split())
        raise WeightsIntegrityError(f"{path}: not readable as JSON ({text})") from None
