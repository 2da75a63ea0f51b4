"""``dfo render CHECKPOINT --out video.mp4``: a video of a saved policy (offscreen GL).

MuJoCo renders offscreen through EGL (GPU or Mesa) or OSMesa (software); ``MUJOCO_GL``
selects it (default here: ``egl``). When no offscreen GL works, the command says so and
how to fix it, and exits with status 3. ``.mp4`` needs ``imageio-ffmpeg``; without it a
GIF is written next to the requested name.

Example:
    $ MUJOCO_GL=egl dfo render runs/Swimmer-v5_ars-v2t_s0 --out swimmer.mp4
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from dfo.configcli import add_config_arguments, given_fields
from dfo.policies.commands.evaluate import GL_HELP, import_mujoco


@dataclass(frozen=True, kw_only=True)
class RenderConfig:
    """Settings of ``dfo render`` (its flags are generated from this class by :mod:`dfo.configcli`).

    Attributes:
        out: output video, .mp4 or .gif.
        steps: frames to record (``None`` = the run's horizon).
        seed: episode seed.
        fps: frames per second (``None`` = the env's).
        width, height: frame size in pixels (passed to envs whose constructor takes them).
        env_kwargs: keyword arguments for gymnasium.make, a JSON object (``None`` = the run's own).
        imports: modules imported first (e.g. one that registers a custom env); named here only,
            never read from the checkpoint.
    """

    out: str = "video.mp4"
    steps: int | None = None
    seed: int = 0
    fps: int | None = None
    width: int = 480
    height: int = 480
    env_kwargs: dict | None = None
    imports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("steps", "fps", "width", "height"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="run directory, checkpoint directory or policy file")
    add_config_arguments(parser, RenderConfig, flags={"imports": "--import"}, repeatable=("imports",),
                         metavars={"imports": "MODULE"}, group_title="render settings (RenderConfig)")


def record(loaded, env, *, steps: int, seed: int) -> tuple[list, float]:
    """Frames of one episode of ``env`` (made with ``render_mode="rgb_array"``) and its frame rate."""
    from dfo.envs.actions import ActionMap

    actions = ActionMap.of(env.action_space)
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(actions.to_env(actions.clip(loaded.act(obs))))
        frames.append(env.render())
        if terminated or truncated:
            break
    return frames, float(env.metadata.get("render_fps", 30))


def write_video(frames: list, out: Path, fps: float) -> Path:
    import imageio

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            gif = out.with_suffix(".gif")
            print(f"dfo render: writing .mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg); "
                  f"writing {gif} instead", file=sys.stderr)
            out = gif
    if out.suffix.lower() == ".gif":
        imageio.mimsave(out, frames, duration=1.0 / fps, loop=0)
    else:
        imageio.mimsave(out, frames, fps=fps)
    return out


def run(args: argparse.Namespace) -> int:
    try:
        cfg = RenderConfig(**given_fields(args, RenderConfig))
    except ValueError as exc:
        print(f"dfo render: error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("MUJOCO_GL", "egl")
    if (code := import_mujoco("render")) is not None:  # MUJOCO_GL=egl/osmesa load GL at import
        return code
    from dfo.envs.ids import import_modules
    from dfo.envs.make import make_render_env
    from dfo.envs.presets import get_preset
    from dfo.policies.checkpoint import CheckpointError
    from dfo.policies.commands.evaluate import check_dims, load

    try:
        import_modules(cfg.imports)  # named on the command line only, never read from the checkpoint
        loaded = load(args.checkpoint)
        env_id = loaded.metadata.get("env_id")
        if not env_id:
            raise ValueError("the checkpoint does not name its env")
        env_kwargs = cfg.env_kwargs if cfg.env_kwargs is not None else loaded.metadata.get("env_kwargs") or {}
        check_dims(loaded, env_id, env_kwargs, cfg.imports)
        steps = cfg.steps or loaded.metadata.get("horizon") or get_preset(env_id).horizon
        env = make_render_env(env_id, env_kwargs, width=cfg.width, height=cfg.height)
    except (ValueError, CheckpointError) as exc:
        print(f"dfo render: error: {exc}", file=sys.stderr)
        return 2
    from gymnasium.error import DependencyNotInstalled

    try:
        frames, fps = record(loaded, env, steps=int(steps), seed=cfg.seed)
    except DependencyNotInstalled as exc:  # e.g. pygame for classic control: not a GL problem
        print(f"dfo render: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # GL errors come as many types (ImportError, RuntimeError, mujoco.FatalError, ...)
        print(f"dfo render: offscreen rendering failed with MUJOCO_GL={os.environ['MUJOCO_GL']}: "
              f"{type(exc).__name__}: {exc}\n{GL_HELP}", file=sys.stderr)
        return 3
    finally:
        env.close()
    out = write_video(frames, Path(cfg.out), cfg.fps or fps)
    print(f"wrote {out} ({len(frames)} frames)")
    return 0
