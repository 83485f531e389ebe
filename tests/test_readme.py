"""The README's Python API example runs as written (no undefined names), on the shipped weights."""
import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"


def _section_code(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], re.DOTALL)
    assert blocks, f"no python block under '## {title}'"
    return blocks[0]


def test_python_api_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_section_code("Python API"), str(README) + ":Python API", "exec"), namespace)  # noqa: S102
    emu = namespace["emu"]
    assert namespace["cov"].shape == (60, 60)
    assert namespace["pred"].xi.shape == emu.r.shape
