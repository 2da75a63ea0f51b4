"""dfo render: any env with rgb_array frames, the run's env_kwargs, --import, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dfo.cli import main

pytest.importorskip("pygame")  # classic-control rendering (the rl extra installs it)

MODULE = '''
import json, os
import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

class MarkedCartPole(CartPoleEnv):
    """CartPole whose constructor notes its keyword argument in a file (to see what render passes)."""
    def __init__(self, render_mode=None, length=0.5):
        super().__init__(render_mode=render_mode)
        self.length = length
        with open(os.environ["DFO_RENDER_MARK"], "a") as fh:
            fh.write(json.dumps({"length": length, "render_mode": render_mode}) + "\\n")

if "DfoMarkedCartPole-v0" not in gym.registry:
    gym.register("DfoMarkedCartPole-v0", entry_point=MarkedCartPole, max_episode_steps=50)
'''


def test_render_a_classic_control_env_without_a_false_gl_error(tmp_path, capsys):
    run = tmp_path / "cp"
    assert main(["train", "CartPole-v1", "--episodes", "16", "--n-jobs", "1", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["render", str(run), "--out", str(tmp_path / "cp.gif"), "--steps", "10"]) == 0
    assert (tmp_path / "cp.gif").stat().st_size > 0
    assert "EGL" not in capsys.readouterr().err


def test_render_uses_the_runs_env_kwargs_and_needs_the_import(tmp_path):
    (tmp_path / "dfo_render_mod.py").write_text(MODULE)
    mark = tmp_path / "mark.jsonl"
    env = {**os.environ, "DFO_RENDER_MARK": str(mark), "PYTHONPATH": str(tmp_path), "MUJOCO_GL": "egl"}

    def dfo(*argv):  # fresh processes: a module imported by one command is not there for the next
        return subprocess.run([sys.executable, "-m", "dfo.cli", *argv], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)

    trained = dfo("train", "DfoMarkedCartPole-v0", "--import", "dfo_render_mod", "--env-kwargs", '{"length": 0.9}',
                  "--episodes", "16", "--n-jobs", "1", "--no-progress", "--out", "run")
    assert trained.returncode == 0, trained.stderr
    mark.write_text("")
    missing = dfo("render", "run", "--out", "v.gif", "--steps", "5")                 # the module not imported
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "DfoMarkedCartPole-v0" in missing.stderr
    done = dfo("render", "run", "--import", "dfo_render_mod", "--out", "v.gif", "--steps", "5")
    assert done.returncode == 0, done.stderr
    made = [json.loads(line) for line in mark.read_text().splitlines()]
    assert {"length": 0.9, "render_mode": "rgb_array"} in made          # the run's env_kwargs, rgb frames
    override = dfo("render", "run", "--import", "dfo_render_mod", "--env-kwargs", '{"length": 0.7}', "--out", "w.gif",
                   "--steps", "5")
    assert override.returncode == 0, override.stderr
    assert json.loads(mark.read_text().splitlines()[-1])["length"] == 0.7   # an explicit override wins


def test_render_bad_settings_are_one_line_errors(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nowhere"), "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_I11_evaluate_with_a_raising_import_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "InvertedPendulum-v5", "--episodes", "8", "--n-jobs", "1", "--no-progress",
                 "--out", str(run)]) == 0
    (tmp_path / "dfo_rel_I11.py").write_text("raise RuntimeError('module init failed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    capsys.readouterr()
    assert main(["evaluate", str(run), "--import", "dfo_rel_I11", "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "module 'dfo_rel_I11' raised RuntimeError while being imported" in err
