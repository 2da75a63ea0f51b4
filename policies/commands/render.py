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
from pathlib import Path

from policies.commands.evaluate import GL_HELP, import_mujoco


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="run directory, checkpoint directory or policy file")
    parser.add_argument("--out", default="video.mp4", help="output video (.mp4 or .gif; default video.mp4)")
    parser.add_argument("--steps", type=int, default=None, help="frames to record (default: the run's horizon)")
    parser.add_argument("--seed", type=int, default=0, help="episode seed")
    parser.add_argument("--fps", type=int, default=None, help="frames per second (default: the env's)")
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=480)


def record(loaded, env_id: str, *, steps: int, seed: int, width: int, height: int) -> tuple[list, float]:
    """Frames of one episode and the env's frame rate."""
    from envs.actions import ActionMap
    from envs.make import make_env

    env = make_env(env_id, render_mode="rgb_array", width=width, height=height)
    try:
        actions = ActionMap.of(env.action_space)
        obs, _ = env.reset(seed=seed)
        frames = [env.render()]
        for _ in range(steps):
            obs, _, terminated, truncated, _ = env.step(actions.to_env(actions.clip(loaded.act(obs))))
            frames.append(env.render())
            if terminated or truncated:
                break
        fps = float(env.metadata.get("render_fps", 30))
    finally:
        env.close()
    return frames, fps


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
    os.environ.setdefault("MUJOCO_GL", "egl")
    if (code := import_mujoco("render")) is not None:  # MUJOCO_GL=egl/osmesa load GL at import
        return code
    from envs.presets import get_preset
    from policies.checkpoint import CheckpointError
    from policies.commands.evaluate import load

    try:
        loaded = load(args.checkpoint)
    except (ValueError, CheckpointError) as exc:
        print(f"dfo render: error: {exc}", file=sys.stderr)
        return 2
    env_id = loaded.metadata.get("env_id")
    steps = args.steps or loaded.metadata.get("horizon") or get_preset(env_id).horizon
    try:
        frames, fps = record(loaded, env_id, steps=int(steps), seed=args.seed, width=args.width, height=args.height)
    except Exception as exc:  # GL errors come as many types (ImportError, RuntimeError, mujoco.FatalError, ...)
        print(f"dfo render: offscreen rendering failed with MUJOCO_GL={os.environ['MUJOCO_GL']}: "
              f"{type(exc).__name__}: {exc}\n{GL_HELP}", file=sys.stderr)
        return 3
    out = write_video(frames, Path(args.out), args.fps or fps)
    print(f"wrote {out} ({len(frames)} frames)")
    return 0
