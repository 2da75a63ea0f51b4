"""The examples/ scripts: each runs, and examples/ars_minimal.py computes what the library computes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Recorder:
    """A serial evaluator that keeps each training batch (its query and episode seeds)."""

    n_workers = 1

    def __init__(self) -> None:
        from dfo.parallel import SerialEvaluator

        self.inner, self.batches = SerialEvaluator(), []
        self.last_traffic = self.inner.last_traffic

    def map(self, fn, items, shared=None):
        out = self.inner.map(fn, items, shared)
        self.last_traffic = self.inner.last_traffic
        if getattr(shared, "training", False) and not isinstance(shared.center, np.ndarray):
            self.batches.append((shared.center, list(items), out))
        return out

    def close(self) -> None:
        self.inner.close()


def test_ars_minimal_reaches_the_librarys_weights_from_the_same_directions_and_seeds():
    import dfo

    ars = _load("ars_minimal")
    settings = dict(method="ars-v1t", n_directions=6, top_b=3, step_size=0.3, noise=0.2, horizon=60, seed=4)
    recorder = _Recorder()
    run = dfo.train("InvertedPendulum-v5", evaluator=recorder, max_iterations=1, episodes=10**4,
                    n_eval_episodes=1, **settings)
    (query, items, outcomes), = recorder.batches
    n_dir = query.directions.n_directions
    assert np.array_equal(query.x, np.zeros(4)) and query.sigma == settings["noise"]
    seeds = np.zeros((n_dir, 2), dtype=np.int64)
    library_returns = np.zeros((n_dir, 2))
    flat_items = [item for group in items for item in group]  # the library maps groups of episodes
    flat_outcomes = [outcome for group in outcomes for outcome in group]
    assert len(flat_items) == 2 * n_dir
    for (index, sign, seed), outcome in zip(flat_items, flat_outcomes):
        seeds[index, 0 if sign > 0 else 1] = seed
        library_returns[index, 0 if sign > 0 else 1] = outcome.true_ret

    env = gym.make("InvertedPendulum-v5")
    M, info = ars.ars_iteration(env, np.zeros((1, 4)), query.directions.matrix(), seeds,
                                step_size=settings["step_size"], noise=settings["noise"],
                                top_b=settings["top_b"], horizon=settings["horizon"])
    np.testing.assert_allclose(np.stack([info["r_plus"], info["r_minus"]], axis=1), library_returns, rtol=1e-12)
    assert len(set(np.maximum(info["r_plus"], info["r_minus"]))) > 1  # the top-b choice mattered
    np.testing.assert_allclose(M.ravel(), run.params, rtol=1e-9, atol=1e-12)
    assert np.abs(run.params).max() > 0.01  # a real step was taken


def test_ars_minimal_runs_as_a_script():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "ars_minimal.py"), "--iterations", "2",
                          "--horizon", "50"], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.count("iteration") == 2 and "return of the final policy" in out


def test_quadratic_example_reaches_the_minimum():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quadratic.py")], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert "distance to the minimizer" in out
    dist = float(out.rsplit("distance to the minimizer", 1)[1].split()[0])
    assert dist < 1e-2  # from 4.5 at x0 = 0


def test_train_swimmer_cli_example_trains_and_evaluates(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "train_swimmer_cli.py"), "--episodes", "8",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "run" / "config.json").is_file() and "Swimmer-v5" in out.stdout


def test_every_example_is_run_by_a_test():
    tests = " ".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    for example in sorted((ROOT / "examples").glob("*.py")):
        assert example.name in tests or example.stem in tests, f"no test runs examples/{example.name}"
