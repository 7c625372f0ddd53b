"""The README's Python example works as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(block.strip().splitlines()) <= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert (result.folder / "report.html").exists()
    assert result.scores.label_accuracy == 1.0


def test_ci_runs_the_readme_test_command():
    root = README.parent
    assert "make test" in README.read_text()
    assert "make test" in (root / ".ci" / "run").read_text()
