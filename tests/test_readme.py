"""The README's Python examples run as written (those without elided parts)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    with open(os.path.join(ROOT, "README.md")) as fh:
        text = fh.read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S)
              if "    ...  " not in b]
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert os.path.exists(tmp_path / "trace.json")
    assert namespace["h"].shape == (3,)
