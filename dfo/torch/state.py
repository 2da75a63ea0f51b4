"""The checkpoint of :class:`dfo.torch.ZerothOrder`: what ``state_dict`` holds and the checks ``load_state_dict``
makes before it restores anything.

The tree: ``zo`` (``step``, ``rng``: the generator state, a uint8 tensor; ``config``: the :class:`ZOConfig` as a
dict; ``shapes`` of the parameters; ``rule``: the line search's state; ``forward_passes``), ``param_groups``
(each group's settings and ``n_params``, no tensors) and ``state`` (per parameter index: subspaces ``U``, ``V``,
side-path factor ``A``, momentum ``N`` / ``momentum_buffer``, refresh bookkeeping). A checkpoint written before a
setting existed is read with the value it ran with (:func:`dfo.torch.config.with_later_fields`); ``shapes``,
``rule`` and ``forward_passes`` may be absent for the same reason.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, MutableMapping

import torch

from dfo.torch.config import ZOConfig, with_later_fields
from dfo.torch.placements import Slot

#: the line search's state before its first step (:mod:`dfo.torch.linesearch`)
FRESH_RULE = {"alpha": None, "noise_sq": 0.0, "noise_n": 0}


def to_dict(*, config: ZOConfig, slots: list[Slot], state: MutableMapping[torch.Tensor, dict[str, Any]],
            param_groups: list[dict[str, Any]], step: int, master: torch.Generator, rule: dict[str, Any],
            forward_passes: int) -> dict[str, Any]:
    """The state_dict tree (tensors cloned); side paths must be flushed first."""
    saved = {
        s.k: {key: (v.detach().clone() if torch.is_tensor(v) else v) for key, v in state[s.p].items()}
        for s in slots
        if s.p in state and state[s.p]
    }
    groups = []
    for group in param_groups:
        g = {key: v for key, v in group.items() if key != "params"}
        g["n_params"] = len(group["params"])
        groups.append(g)
    return {
        "zo": {"step": step, "rng": master.get_state(), "config": asdict(config),
               "shapes": [list(s.p.shape) for s in slots], "rule": dict(rule),
               "forward_passes": forward_passes},
        "param_groups": groups,
        "state": saved,
    }


def restore_groups(sd: dict[str, Any], param_groups: list[dict[str, Any]]) -> None:
    """Restore the groups' settings (lr, weight decay, ...) of a checked ``sd``."""
    for group, saved in zip(param_groups, sd["param_groups"]):
        group.update({key: v for key, v in saved.items() if key not in ("n_params", "params")})


def restore_state(sd: dict[str, Any], slots: list[Slot], state: MutableMapping[torch.Tensor, dict[str, Any]]) -> None:
    """Replace the per-parameter state by the checkpoint's, on each parameter's device (side paths flushed first)."""
    state.clear()
    for s in slots:
        saved = sd["state"].get(s.k)
        if saved is None:
            continue
        state[s.p] = {key: (v.to(s.p.device).clone() if torch.is_tensor(v) else v) for key, v in saved.items()}


def check(sd: Any, *, config: ZOConfig, slots: list[Slot], param_groups: list[dict[str, Any]],
          master: torch.Generator) -> None:
    """Raise ValueError unless ``sd`` is a ZerothOrder state of these settings, groups and shapes."""
    foreign = "cannot load it into ZerothOrder"
    if not isinstance(sd, dict) or not isinstance(sd.get("zo"), dict) or "param_groups" not in sd \
            or "state" not in sd:
        keys = sorted(map(str, sd)) if isinstance(sd, dict) else type(sd).__name__
        raise ValueError(f"not a ZerothOrder state_dict (keys {keys}; another optimizer's state?): {foreign}")
    zo = sd["zo"]
    saved = with_later_fields(zo.get("config"))  # written before some options: the values those runs used
    if saved != asdict(config):
        raise ValueError(f"optimizer config differs from the checkpoint: {zo.get('config')} vs {asdict(config)}")
    groups = sd["param_groups"]
    if len(groups) != len(param_groups) or any(
            g.get("n_params") != len(mine["params"]) for g, mine in zip(groups, param_groups)):
        raise ValueError("the checkpoint has other parameter groups (another model or parameter selection): "
                         f"{[g.get('n_params') for g in groups]} parameters per group vs "
                         f"{[len(g['params']) for g in param_groups]}")
    shapes = zo.get("shapes")
    mine = [list(s.p.shape) for s in slots]
    if shapes is not None and [list(x) for x in shapes] != mine:
        bad = next(i for i, (a, b) in enumerate(zip(shapes, mine)) if list(a) != b)
        raise ValueError(f"the checkpoint was made for another model: parameter {bad} has shape "
                         f"{tuple(shapes[bad])} there and {tuple(mine[bad])} here")
    for k, st in sd["state"].items():
        if not isinstance(k, int) or not 0 <= k < len(slots) or not isinstance(st, dict):
            raise ValueError(f"the checkpoint holds state for parameter {k!r}, which this optimizer does not have")
        s = slots[k]
        m = s.p.shape[0] if s.p.ndim else 1
        n = s.p.shape[1] if s.p.ndim == 2 else None
        want = {"U": (m, s.rank), "V": (n, s.rank), "N": (m, s.rank), "A": (m, s.rank),
                "momentum_buffer": tuple(s.p.shape)}
        for key, v in st.items():
            if key in want and (not torch.is_tensor(v) or tuple(v.shape) != want[key]):
                got = tuple(v.shape) if torch.is_tensor(v) else type(v).__name__
                raise ValueError(f"the checkpoint was made for another model: state {key!r} of parameter {k} "
                                 f"has shape {got}, expected {want[key]}")
    if not (torch.is_tensor(zo.get("rng")) and zo["rng"].dtype == torch.uint8):
        raise ValueError("the checkpoint's generator state is not a uint8 tensor")
    expected = master.get_state()
    if zo["rng"].shape != expected.shape:  # N-T21: a truncated or foreign generator state
        raise ValueError(f"the checkpoint's generator state has {zo['rng'].numel()} bytes, a torch CPU generator "
                         f"{expected.numel()}: truncated or not from ZerothOrder")
    if type(zo.get("step")) is not int or zo["step"] < 0:  # N-T23
        raise ValueError(f"the checkpoint's step is {zo.get('step')!r}, not an integer >= 0")
    passes = zo.get("forward_passes", 0)
    if type(passes) is not int or passes < 0:
        raise ValueError(f"the checkpoint's forward_passes is {passes!r}, not an integer >= 0")
