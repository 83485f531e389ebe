"""No code path of iaemu may unpickle anything, also not through a library (GetDist's cache,
PyYAML's full loader, numpy's object arrays, torch.load without weights_only, numba's on-disk
cache, whose index files numba reads with pickle).

A source scan of every module the package installs and of the benchmarks: each call that can
construct arbitrary objects must carry its safe option on the same call.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["iaemu_likelihood", "training", "cosmosis_module", "trained_weights", "benchmarks", "scripts"]


def _sources():
    for folder in SCANNED:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _call_name(node: ast.Call) -> str:
    func = node.func
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_const(value, expected) -> bool:
    return isinstance(value, ast.Constant) and value.value is expected


def _unsafe_calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        last = name.rsplit(".", 1)[-1]
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        where = f"{shown}:{node.lineno} {name}"
        if name in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "joblib.load",
                    "yaml.unsafe_load", "yaml.full_load", "shelve.open", "marshal.loads"):
            yield where
        elif last == "loadMCSamples":  # GetDist: pickle cache + PyYAML full Loader on the chain's yaml
            yield where
        elif name in ("np.load", "numpy.load") and not _is_const(_keyword(node, "allow_pickle"), False):
            yield where + " without allow_pickle=False"
        elif name == "torch.load" and not _is_const(_keyword(node, "weights_only"), True):
            yield where + " without weights_only=True"
        elif last in ("njit", "jit", "vectorize", "guvectorize", "generated_jit") and \
                _is_const(_keyword(node, "cache"), True):
            yield where + " with cache=True (numba unpickles its cache index)"
        elif name == "yaml.load":
            loader = _keyword(node, "Loader")
            loader = loader if loader is not None else (node.args[1] if len(node.args) > 1 else None)
            if not (isinstance(loader, ast.Attribute) and loader.attr in ("SafeLoader", "CSafeLoader")):
                yield where + " without yaml.SafeLoader"


def test_scan_finds_something_to_scan():
    assert len(list(_sources())) > 50


@pytest.mark.parametrize("snippet, found", [
    ("import numpy as np\nnp.load('x.npy')", True),
    ("import numpy as np\nnp.load('x.npy', allow_pickle=False)", False),
    ("import torch\ntorch.load('x.pt')", True),
    ("import torch\ntorch.load('x.pt', weights_only=True)", False),
    ("import yaml\nyaml.load(open('x'), Loader=yaml.Loader)", True),
    ("import yaml\nyaml.load(open('x'), Loader=yaml.SafeLoader)", False),
    ("from getdist import loadMCSamples\nloadMCSamples('c', no_cache=True)", True),
    ("import pickle\npickle.loads(b'')", True),
    ("import numba\n@numba.njit(parallel=True, cache=True)\ndef f(x):\n    return x", True),
    ("import numba\n@numba.njit(parallel=True)\ndef f(x):\n    return x", False),
])
def test_the_scan_catches_each_unsafe_form(tmp_path, snippet, found):
    probe = tmp_path / "probe.py"
    probe.write_text(snippet)
    assert bool(list(_unsafe_calls(probe))) is found


def test_no_code_path_unpickles():
    offenders = [hit for path in _sources() for hit in _unsafe_calls(path)]
    assert offenders == []
