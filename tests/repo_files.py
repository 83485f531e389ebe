"""Repository files that are not part of the package (benchmarks, scripts, CosmoSIS modules), loaded
as modules by path, the way their own runners load them."""
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_module(path, name: str | None = None):
    """The Python file ``path`` (absolute, or relative to the repository root) as a fresh module."""
    path = REPO / path
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
