"""Save/load a policy with its normalizer: ``<stem>.npz`` (arrays) + ``<stem>.json`` (metadata).

No pickle anywhere: arrays are read with ``np.load(allow_pickle=False)`` and the
metadata is plain JSON. Each file is written atomically
(:func:`dfo.fileio.atomic_write_bytes`); the JSON is written last and records the SHA-256 of
the npz, so a torn pair (crash between the two writes) or a corrupt file is detected
at load time with a clear error.

Example:
    >>> import tempfile, os
    >>> from dfo.policies import LinearPolicy, ObsNormalizer
    >>> pol = LinearPolicy(3, 1)
    >>> d = tempfile.mkdtemp()
    >>> _ = save_policy(os.path.join(d, "pol"), pol, pol.init_params(), ObsNormalizer(3), {"env_id": "X"})
    >>> load_policy(os.path.join(d, "pol")).metadata["env_id"]
    'X'
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dfo.fileio import atomic_write_bytes
from dfo.jsontree import load_json
from dfo.policies.base import Policy, policy_from_config
from dfo.policies.normalizer import ObsNormalizer

FORMAT_VERSION = 1
#: a policy's metadata is a few KB; more is not a file dfo wrote
MAX_META_BYTES = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class LoadedPolicy:
    """What ``load_policy`` returns."""

    policy: Policy
    params: np.ndarray
    normalizer: ObsNormalizer | None
    metadata: dict[str, Any]

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Policy action on normalized ``obs`` (unclipped)."""
        if self.normalizer is not None:
            obs = self.normalizer.normalize(obs)
        return self.policy.act(self.params, obs)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """Stable-Baselines3's ``predict``: ``(action, state)`` for one observation or a batch.

        The action is the one training rollouts take: normalized observation, policy,
        clipped to the env's action bounds, or ``argmax`` of the scores for a discrete
        action space (:mod:`dfo.envs.actions`; the space is read from the env named in the
        metadata; raw outputs when the policy names no env). Dict observations are flattened like
        ``gymnasium.wrappers.FlattenObservation``. The policy is deterministic and has no
        recurrent state: ``deterministic`` and ``episode_start`` are accepted for SB3's
        ``evaluate_policy`` and ignored, ``state`` is returned unchanged.

        Example:
            >>> from stable_baselines3.common.evaluation import evaluate_policy  # doctest: +SKIP
            >>> evaluate_policy(load_policy("runs/x/best_policy"), env, n_eval_episodes=5)  # doctest: +SKIP
        """
        env = self._env()
        obs = observation
        if isinstance(obs, dict):
            obs = _flatten_dict(env, obs)
        obs = np.asarray(obs, dtype=np.float64)
        batch = obs.reshape(-1, self.policy.obs_dim) if obs.ndim != 1 else obs
        action = self.act(batch)
        if env is not None:
            from dfo.envs.actions import ActionMap

            action = ActionMap.of(env.action_space).to_env_batch(action)
        return action, state

    def _env(self) -> Any:
        """This process's cached env of the metadata's ``env_id`` and ``env_kwargs`` (``None``
        without an env id). A custom env must be registered by the caller: no module named
        in a file is ever imported."""
        env_id = self.metadata.get("env_id")
        if not env_id:
            return None
        from dfo.envs.cache import get_env

        kwargs = dict(self.metadata.get("env_kwargs") or {})
        kwargs.pop("render_mode", None)  # only the spaces are needed: never open a window from a file's setting
        return get_env(env_id, **kwargs)


def _flatten_dict(env: Any, obs: dict) -> np.ndarray:
    """Flatten a Dict observation (one, or a batch from a vector env) in the space's key order."""
    if env is None:
        raise ValueError("a Dict observation needs the env's observation space: save the policy with an env_id")
    import gymnasium as gym

    space = env.observation_space
    key = next(iter(space.keys()))
    first = np.asarray(obs[key])
    if first.shape == space[key].shape:  # one observation
        return gym.spaces.flatten(space, obs)
    n = len(first)
    return np.stack([gym.spaces.flatten(space, {k: v[i] for k, v in obs.items()}) for i in range(n)])


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".npz", ".json") else p


def write_checksummed_pair(npz_path: Path, json_path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``arrays`` as an npz and ``meta`` (plus the npz's SHA-256) as json, each atomically.

    The checksum ties the pair together: a truncated npz, or an npz from another
    save, is detected by :func:`read_checksummed_pair`.
    """
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz_bytes = buf.getvalue()
    meta = {k: v for k, v in meta.items() if k != "json_sha256"}
    meta = {**meta, "npz_sha256": hashlib.sha256(npz_bytes).hexdigest()}
    meta["json_sha256"] = _meta_hash(meta)
    atomic_write_bytes(npz_path, npz_bytes)
    atomic_write_bytes(json_path, json.dumps(meta, indent=1, sort_keys=True).encode())


def _meta_hash(meta: dict) -> str:
    """SHA-256 of the metadata without its own hash (canonical JSON: sorted keys)."""
    body = {k: v for k, v in meta.items() if k != "json_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_checksummed_pair(npz_path: Path, json_path: Path, what: str = "policy metadata") -> tuple[dict, dict[str, np.ndarray]]:
    """Read a pair written by :func:`write_checksummed_pair` (no pickle); ``what`` names
    the kind of file in error messages.

    Raises:
        ValueError: corrupt json, a checksum mismatch (truncated or mismatched pair),
            or an unreadable npz; the message names the file.
    """
    try:
        meta = load_json(json_path, what=f"{what} {json_path}", max_bytes=MAX_META_BYTES)
        if not isinstance(meta, dict):
            raise ValueError(f"{what} {json_path} is not a JSON object")
    except ValueError as e:
        raise ValueError(f"corrupt {e}") from None
    if "json_sha256" in meta and meta["json_sha256"] != _meta_hash(meta):
        # BP2: an edited env_kwargs (or anything else) in best_policy.json, which no manifest covers
        raise ValueError(f"{json_path} does not match its own checksum (json_sha256): edited or corrupt")
    npz_bytes = Path(npz_path).read_bytes()
    if hashlib.sha256(npz_bytes).hexdigest() != meta.get("npz_sha256"):
        raise ValueError(f"{npz_path} does not match the checksum in {json_path} (truncated, corrupt or mismatched pair)")
    try:
        with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ValueError(f"unreadable arrays in {npz_path}: {e}") from e
    return meta, arrays


def save_policy(
    path: str | os.PathLike,
    policy: Policy,
    params: np.ndarray,
    normalizer: ObsNormalizer | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``<stem>.npz`` and ``<stem>.json`` atomically.

    Args:
        path: file stem (a trailing ``.npz``/``.json`` is stripped).
        policy: the policy (its ``config()`` goes into the JSON).
        params: flat parameter vector.
        normalizer: optional observation normalizer (accumulated stats and snapshot saved).
        metadata: JSON-serializable extras (env id, iteration, ...); key ``"policy"``
            and ``"format"`` are reserved.

    Returns:
        The ``(npz_path, json_path)`` written.
    """
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    params = policy.check_params(params).astype(np.float64)
    arrays: dict[str, np.ndarray] = {"params": params}
    if normalizer is not None:
        if normalizer.dim != policy.obs_dim:
            raise ValueError(f"normalizer dim {normalizer.dim} != policy obs_dim {policy.obs_dim}")
        arrays.update({f"norm_{k}": v for k, v in normalizer.state.items()})
    meta = dict(metadata or {})
    for reserved in ("policy", "format", "npz_sha256", "json_sha256", "has_normalizer"):
        if reserved in meta:
            raise ValueError(f"metadata key {reserved!r} is reserved")
    meta.update({"format": FORMAT_VERSION, "policy": policy.config(), "has_normalizer": normalizer is not None})
    npz_path, json_path = stem.with_suffix(".npz"), stem.with_suffix(".json")
    write_checksummed_pair(npz_path, json_path, arrays, meta)
    return npz_path, json_path


def load_policy(path: str | os.PathLike) -> LoadedPolicy:
    """Read a pair written by ``save_policy``.

    Raises:
        FileNotFoundError: a file of the pair is missing.
        ValueError: corrupt/truncated files, a checksum mismatch, or inconsistent shapes.
    """
    stem = _stem(path)
    npz_path, json_path = stem.with_suffix(".npz"), stem.with_suffix(".json")
    for p in (npz_path, json_path):
        if not p.exists():
            raise FileNotFoundError(f"policy file {p} not found (a policy is saved as {stem}.npz + {stem}.json)")
    meta, arrays = read_checksummed_pair(npz_path, json_path)
    policy = policy_from_config(meta["policy"])
    params = policy.check_params(arrays["params"])
    normalizer = None
    if meta.get("has_normalizer"):
        normalizer = ObsNormalizer.from_state({k[5:]: v for k, v in arrays.items() if k.startswith("norm_")})
    user_meta = {k: v for k, v in meta.items() if k not in ("npz_sha256", "json_sha256", "has_normalizer")}
    return LoadedPolicy(policy=policy, params=params, normalizer=normalizer, metadata=user_meta)
