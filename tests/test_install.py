"""The package installs non-editable and works from a folder that holds a user's own `envs/` and
`policies/` packages: dfo's live under the `dfo` namespace (pyproject's package-dir), so neither
shadows the other. Also: every package folder of the tree is listed in pyproject's packages."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"dfo": "dfo", "envs": "dfo.envs", "policies": "dfo.policies"}


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([package, *rel]))
    assert found == listed, f"pyproject packages differ from the tree: missing {found - listed}, extra {listed - found}"
    assert config["package-dir"] == {"dfo.envs": "envs", "dfo.policies": "policies"}


def test_a_non_editable_install_trains_beside_a_users_envs_and_policies(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "-q",
                            "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=600)
    if build.returncode != 0 and re.search(r"(?i)network|connection|resolve|index", build.stderr):
        pytest.skip(f"building the wheel needs the package index: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stderr[-3000:]
    assert (target / "dfo" / "envs" / "make.py").is_file() and (target / "dfo" / "policies" / "api.py").is_file()
    assert not (target / "envs").exists() and not (target / "policies").exists()   # nothing top-level but dfo
    user = tmp_path / "project"
    for name, marker in (("envs", "USER_ENVS"), ("policies", "USER_POLICIES")):
        (user / name).mkdir(parents=True)
        (user / name / "__init__.py").write_text(f"{marker} = True\n")
    code = ("import sys, dfo, envs, policies\n"
            "assert dfo.__file__.startswith(sys.argv[1]), dfo.__file__\n"
            "assert envs.USER_ENVS and policies.USER_POLICIES\n"
            "r = dfo.train('CartPole-v1', episodes=16, n_jobs=2, seed=0, progress=False)\n"
            "print('trained', r.episodes)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    run = subprocess.run([sys.executable, "-c", code, str(target)], cwd=user, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "trained 16" in run.stdout
