"""The Python examples in docs/ run as written (on fewer images), so the docs cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("doc", ["api.md"])
def test_python_blocks_run(doc, monkeypatch):
    from xbarsim import datasets

    if datasets.find_dataset("mnist", "test") is None:
        pytest.skip("the docs' examples read the MNIST test set (set XBARSIM_DATA)")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / doc).read_text(), re.S)
    assert blocks
    monkeypatch.chdir(ROOT)  # the examples use paths relative to the repository root
    for code in blocks:
        code = code.replace("limit=1000", "limit=40")
        env: dict = {}
        exec(compile(code, f"docs/{doc}", "exec"), env)  # noqa: S102 - our own documentation
    if "res" in env:
        assert 0 <= env["res"].accuracy(env["labels"]) <= 1
