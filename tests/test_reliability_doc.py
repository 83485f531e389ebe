"""docs/RELIABILITY.md names only tests that exist: a promise never points at a removed test."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _named_tests(text):
    """(file, test) pairs of 'tests/f.py::a, ::b' runs, each '::b' taking the last file named."""
    pairs, current = [], None
    for match in re.finditer(r"(tests/[\w/]+\.py)?::(\w+)", text):
        current = match.group(1) or current
        pairs.append((current, match.group(2)))
    return pairs


def test_every_test_named_in_the_reliability_doc_exists():
    text = (ROOT / "docs" / "RELIABILITY.md").read_text(encoding="utf-8")
    pairs = _named_tests(text)
    assert len(pairs) > 50
    missing = []
    for path, name in pairs:
        source = (ROOT / path).read_text(encoding="utf-8") if path and (ROOT / path).is_file() else ""
        prefix = name.rstrip("_")  # "test_fit_monitor_*" names a family
        if not re.search(rf"^def {re.escape(prefix)}\w*\(", source, re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert missing == []
