"""docs/extending.md is enough to add an estimator: its code blocks, run as written, register one,
minimize with it and train a policy with it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "extending.md"


def _section(title: str) -> str:
    text = GUIDE.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_the_guides_estimator_snippet_registers_minimizes_and_trains(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", _section("A gradient estimator"), flags=re.S)
    assert len(blocks) == 2, "the estimator section should hold the estimator block and the training block"
    checks = """
assert "rademacher" in dfo.ESTIMATORS and dfo.ESTIMATORS["rademacher"].central
assert res.fun < 1e-6 and res.nfev <= 3000, (res.fun, res.nfev)
est = dfo.get_estimator("rademacher", sigma=1e-3, n_directions=4)
q = est.ask(np.arange(3.0), rng=0)
assert set(np.unique(q.directions.matrix())) == {-1.0, 1.0} and q.points.shape == (8, 3)
g = est.tell(q, [float(p @ p) for p in q.points]).grad  # a quadratic: central differences are exact
assert np.allclose(g, q.directions.matrix().T @ (q.directions.matrix() @ (2 * np.arange(3.0))) / 4)
assert run.history[0]["eval_return"] < run.eval_return, (run.history[0]["eval_return"], run.eval_return)
print("ok")
"""
    script = tmp_path / "guide.py"
    script.write_text("\n".join(blocks) + checks)
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_the_guide_names_files_and_tests_that_exist():
    text = GUIDE.read_text()
    for path in sorted(set(re.findall(r"`((?:dfo|envs|policies|tests)/[\w/.<>-]+\.py)", text))):
        if "<" not in path:
            assert (ROOT / path).exists(), f"docs/extending.md names {path}, which does not exist"
    for module, test in sorted(set(re.findall(r"(test_\w+)\.py::(test_\w+)", text))):
        source = (ROOT / "tests" / f"{module}.py").read_text()
        assert f"def {test}(" in source, f"docs/extending.md names {module}.py::{test}, which does not exist"
