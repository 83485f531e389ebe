"""Repository hygiene: no large file is committed outside the folders meant to hold data.

The sizes are those of the blobs in git's index (what is committed or staged), so the check does not
depend on the working tree. It runs in a git checkout only: an sdist or an installed copy has no
index to read, and then the test is skipped.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 ** 2
#: Largest file allowed outside :data:`DATA_FOLDERS` (bytes).
MAX_BYTES = 1 * MIB
#: Largest file allowed anywhere (bytes): above it a data set belongs in a release asset, not in git.
MAX_BYTES_ANYWHERE = 25 * MIB
#: Folders whose job is to hold data (the largest tracked file in each, when this was written):
#: training sets and the halo catalog (~10 MiB), shipped weights (~2.6 MiB), benchmark figures and
#: result tables (~0.3 MiB).
DATA_FOLDERS = ("training/data/", "trained_weights/", "benchmarks/results/")


def oversized(sizes, data_folders=DATA_FOLDERS, max_bytes=MAX_BYTES, max_anywhere=MAX_BYTES_ANYWHERE):
    """One line per file over its limit.

    Parameters
    ----------
    sizes : iterable of (str, int)
        Repository-relative POSIX path and size in bytes.
    data_folders : tuple of str
        Path prefixes (ending in ``/``) where files up to ``max_anywhere`` bytes are allowed.
    max_bytes, max_anywhere : int
        Limits in bytes outside and inside ``data_folders``.

    Returns
    -------
    list of str
        ``"<path>: <size> MiB; allowed: ..."`` for each offending file, in the given order.
    """
    allowed = ", ".join(data_folders)
    problems = []
    for path, size in sizes:
        if size > max_anywhere:
            problems.append(f"{path}: {size / MIB:.1f} MiB; allowed: at most {max_anywhere / MIB:g} MiB anywhere")
        elif size > max_bytes and not path.startswith(data_folders):
            problems.append(f"{path}: {size / MIB:.1f} MiB; allowed: at most {max_bytes / MIB:g} MiB outside "
                            f"{allowed} (and {max_anywhere / MIB:g} MiB inside them)")
    return problems


def _git(repo: Path, *args, stdin: bytes = b"") -> bytes:
    done = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True)
    if done.returncode:
        raise RuntimeError(f"git {' '.join(args)} in {repo} failed: {' '.join(done.stderr.decode().split())}")
    return done.stdout


def tracked_sizes(repo: Path):
    """(path, size in bytes) of every file in the git index of ``repo``."""
    listing = _git(repo, "ls-files", "-z", "--stage").decode()
    entries = []
    for record in filter(None, listing.split("\0")):
        meta, path = record.split("\t", 1)
        mode, blob, _stage = meta.split()
        if mode != "160000":  # a submodule is a commit, not a blob
            entries.append((path, blob))
    sizes = _git(repo, "cat-file", "--batch-check=%(objectsize)",
                 stdin="".join(f"{blob}\n" for _, blob in entries).encode()).decode().split()
    assert len(sizes) == len(entries), f"git cat-file answered {len(sizes)} sizes for {len(entries)} files"
    return [(path, int(size)) for (path, _), size in zip(entries, sizes)]


def test_oversized_names_each_file_its_size_and_the_allowed_folders():
    sizes = [("training/data/train.npz", 10 * MIB), ("trained_weights/v1/weights.npz", 3 * MIB),
             ("benchmarks/results/fig.png", 2 * MIB), ("docs/big.png", 2 * MIB),
             ("iaemu_likelihood/data/example.npz", MIB + 1), ("training/data/huge.npz", 30 * MIB),
             ("training/dataX/a.npz", 2 * MIB), ("tests/small.npz", MIB)]
    problems = oversized(sizes)
    assert [p.split(":")[0] for p in problems] == ["docs/big.png", "iaemu_likelihood/data/example.npz",
                                                    "training/data/huge.npz", "training/dataX/a.npz"]
    assert problems[0] == ("docs/big.png: 2.0 MiB; allowed: at most 1 MiB outside training/data/, "
                           "trained_weights/, benchmarks/results/ (and 25 MiB inside them)")
    assert problems[2] == "training/data/huge.npz: 30.0 MiB; allowed: at most 25 MiB anywhere"
    assert all("\n" not in p for p in problems)


def test_tracked_sizes_reads_staged_blobs_not_the_working_tree(tmp_path):
    if not shutil.which("git"):
        pytest.skip("git is not on PATH")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "big file.bin").write_bytes(b"\0" * (MIB + 7))
    (tmp_path / "small.txt").write_text("x" * 10)
    subprocess.run(["git", "-C", str(tmp_path), "add", "docs/big file.bin", "small.txt"], check=True)
    (tmp_path / "small.txt").write_text("x" * (2 * MIB))  # not staged: the index still holds 10 bytes
    (tmp_path / "untracked.bin").write_bytes(b"\0" * (2 * MIB))
    assert sorted(tracked_sizes(tmp_path)) == [("docs/big file.bin", MIB + 7), ("small.txt", 10)]
    assert [p.split(":")[0] for p in oversized(tracked_sizes(tmp_path))] == ["docs/big file.bin"]


def test_no_large_file_is_tracked_outside_the_data_folders():
    if not (REPO / ".git").exists():
        pytest.skip(f"{REPO} is not a git checkout (sdist or installed copy): no index to check")
    assert shutil.which("git"), "git is not on PATH, but this is a git checkout: install git to run this check"
    sizes = tracked_sizes(REPO)
    assert any(path == "setup.cfg" for path, _ in sizes), "git ls-files did not list setup.cfg"
    problems = oversized(sizes)
    assert not problems, "; ".join(problems)
