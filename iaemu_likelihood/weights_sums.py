"""``SHA256SUMS`` of a weights folder: writing and verifying the checksums.

``SHA256SUMS`` (sha256sum format) covers every file of a weights folder but ``README.md`` and
itself; :func:`verify_checksums` checks it before anything is read.
"""
from __future__ import annotations

import re
from pathlib import Path

from ._io import atomic_write_bytes, sha256_file
from .errors import WeightsIntegrityError
from .weights import CHECKSUM_FILE, REQUIRED_FILES, UNCHECKED_FILES

__all__ = ["write_checksums", "verify_checksums", "checked_files"]


def _inside_name(name: str) -> bool:
    """Whether a SHA256SUMS file name stays inside its folder (relative, no '..' part)."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts \
        and "\\" not in name


def checked_files(folder: Path) -> list[str]:
    """Files of ``folder`` that ``SHA256SUMS`` covers (relative POSIX names, sorted)."""
    names = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in UNCHECKED_FILES and not path.name.startswith("."):
            names.append(rel)
    return names


def write_checksums(folder) -> Path:
    """(Re)write ``SHA256SUMS`` for every file of ``folder`` except README.md and itself.

    Call it again after adding files (reference predictions, reports, figures).
    """
    folder = Path(folder)
    lines = [f"{sha256_file(folder / name)}  {name}\n" for name in checked_files(folder)]
    path = folder / CHECKSUM_FILE
    atomic_write_bytes(path, "".join(lines).encode())
    return path


def verify_checksums(folder, required=REQUIRED_FILES) -> dict[str, str]:
    """Check every file listed in ``SHA256SUMS`` and that every ``required`` file is listed.

    Returns
    -------
    dict
        ``file name -> sha256`` of the verified files.

    Raises
    ------
    WeightsIntegrityError
        Naming the file that is missing, unlisted or whose hash differs.
    """
    folder = Path(folder)
    sums_path = folder / CHECKSUM_FILE
    if not sums_path.is_file():
        raise WeightsIntegrityError(f"{sums_path} is missing: cannot verify the weights in {folder}")
    try:
        text = sums_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsIntegrityError(f"{sums_path}: not readable as a UTF-8 text file "
                                    f"({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    expected = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            raise WeightsIntegrityError(f"{sums_path} line {n} is not 'sha256  filename': {line[:80]!r}")
        name = parts[1].lstrip("*").strip()
        if not _inside_name(name):
            raise WeightsIntegrityError(f"{sums_path} line {n}: file name {name[:80]!r}; allowed: a "
                                        "relative path inside the folder (no '..', not absolute)")
        if name in expected:
            raise WeightsIntegrityError(f"{sums_path} line {n}: {name!r} is listed twice")
        expected[name] = parts[0]
    for name in required:
        if name not in expected:
            raise WeightsIntegrityError(f"{name} is not listed in {sums_path}")
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise WeightsIntegrityError(f"{name} is listed in {sums_path} but missing from {folder}")
        actual = sha256_file(path)
        if actual != digest:
            raise WeightsIntegrityError(
                f"{name} in {folder} does not match its SHA256SUMS entry (expected {digest}, "
                f"found {actual}): the file is corrupted or was modified")
    return expected
