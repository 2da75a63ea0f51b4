"""Seeds-only workers: MeZO steps whose forward passes run in processes that each hold a model replica.

:class:`ZOWorkers` runs the ``mezo`` method of :class:`dfo.torch.ZerothOrder` with its
``n_directions`` two-sided perturbations spread over the workers of a :mod:`dfo.parallel`
evaluator (``"serial"``, ``"loky"`` on one machine, ``"dask"`` across machines). Each worker
process builds its replica once, from a picklable ``factory`` (``factory() -> (model, loss_fn)``,
``loss_fn(model, batch) -> scalar loss``), and keeps it in a per-process cache, the way the RL
rollouts keep their env per worker. Per step only seeds and scalars cross a process boundary:

* the driver sends the step's seed, its index, the ``batch`` argument (meant to be small: batch
  indices or a batch id, which ``loss_fn`` looks up in data the factory loaded), each worker's
  share of the directions ``[lo, hi)``, and the *log* of the updates the replicas have not applied
  yet: per step, its seed, lr and the ``n_directions`` projected gradients;
* each worker replays the logged updates (regenerating every ``z`` from its seed), evaluates
  ``f(theta + eps z_i)`` and ``f(theta - eps z_i)`` for its share and returns those losses.

No weights travel, ever: a process that joins late, or whose replica fell behind, is brought up
to date from the factory's initial weights and the log (it answers "behind", and the driver sends
the missing part of the log). ``state_dict`` is therefore seeds and scalars too.

Bit-identical to one process. A replica applies exactly the in-place operations of
``ZerothOrder.step`` for ``mezo`` in the same order: for each direction ``+eps z_i``, ``-2 eps z_i``,
``+eps z_i`` (these round trips are not exact in floating point, so a replica evaluating directions
``lo..hi-1`` first replays the round trips of ``0..lo-1`` without forward passes), then weight decay
and the fused restore-and-update. Every replica, and the driver's :attr:`ZOWorkers.model`, therefore
holds the weights of ``ZerothOrder(model.parameters(), method="mezo", seed=seed, ...)`` run in one
process, bit for bit, whatever the number of workers or the backend, provided the forward pass
itself is deterministic (same device type; on CPU the same number of intra-op threads as the
reference, since a matmul may round differently with another thread count; workers use
``threads`` = 1).

Supported methods: ``mezo`` (dense Gaussian directions, any ``n_directions``, weight decay,
``noise="torch"`` or ``"hash"``). The other registry methods are refused in one line: the low-rank
ones keep per-replica subspaces and side paths, the step rules need the losses of one pass before
the next (line search) or a Gram matrix over all directions.

Example:
    >>> import torch
    >>> def factory():                           # module-level in real use, so workers can import it
    ...     torch.manual_seed(0)
    ...     model = torch.nn.Linear(4, 1)
    ...     x, y = torch.randn(64, 4), torch.randn(64, 1)
    ...     return model, lambda m, idx: torch.nn.functional.mse_loss(m(x[idx]), y[idx])
    >>> with ZOWorkers(factory, lr=1e-2, n_directions=2, seed=0) as zo:   # evaluator="loky", n_jobs=2
    ...     losses = [zo.step(list(range(16 * (t % 4), 16 * (t % 4) + 16))) for t in range(20)]
    ...     weight = zo.model.weight
    >>> losses[-1] < losses[0]
    True
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from typing import Any

import torch
from torch import nn

import dfo.torch.methods as registry
from dfo.parallel import Evaluator, chunk_bounds, make_evaluator
from dfo.torch.config import ZOConfig
from dfo.torch.replica import REPLICAS, Factory, Payload, Record, Replica, evaluate_share, lock_for
from dfo.torch.stepinfo import StepInfo

__all__ = ["SUPPORTED", "ZOWorkers", "Record"]

#: registry methods that :class:`ZOWorkers` runs
SUPPORTED = ("mezo",)
#: rounds of "behind" answers a step may take before it gives up (each round sends a longer log)
MAX_ROUNDS = 8
_SEED_LIMIT = 2**63

def _positive(name: str, value: Any, *, zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            value < 0 if zero else value <= 0):
        raise ValueError(f"{name} must be a finite number {'>=' if zero else '>'} 0, got {value!r}")
    return float(value)


class ZOWorkers:
    """MeZO with the forward passes of each step spread over worker processes holding model replicas.

    Args:
        factory: picklable ``factory() -> (model, loss_fn)``, ``loss_fn(model, batch) -> scalar``; called
            once per process (each worker, and the driver when :attr:`model` is read). It must build the
            same initial weights everywhere (seed torch, or load a checkpoint) and may put the model on the
            process's GPU. Module-level functions and ``functools.partial`` of them pickle by reference.
        evaluator: a spec of :func:`dfo.parallel.make_evaluator` (``None``/``"serial"``, an int of loky
            jobs, ``"loky"``, ``"dask"`` with ``scheduler=``, ``"local-dask"``) or an evaluator; one made
            here is closed by :meth:`close`.
        method: ``"mezo"`` (see :data:`SUPPORTED`); others raise ``ValueError``.
        lr, eps, n_directions, weight_decay, seed, noise: as in :class:`dfo.torch.ZerothOrder` (one
            parameter group; weight decay on tensors of >= 2 dimensions). :attr:`lr` may be changed
            between steps.
        threads: torch intra-op threads in each worker process (1: one core per worker).
        window: steps of log sent with every step (a replica further behind asks for more).
        **evaluator_kw: passed to ``make_evaluator`` (``n_jobs``, ``scheduler``, ...).

    Each step splits the ``n_directions`` directions into ``min(n_directions, evaluator.n_workers)``
    contiguous shares, one item each. :attr:`last_traffic` sums the evaluator's ``last_traffic`` over
    the step's rounds (``rounds`` > 1 when a replica was behind); :attr:`last_worker_seconds` holds
    each share's (wall, CPU) seconds in its worker (log replay and forward passes).
    """

    def __init__(self, factory: Factory, *, evaluator: Any = None, method: str = "mezo", lr: float = 1e-6,
                 eps: float = 1e-3, n_directions: int | None = None, weight_decay: float = 0.0,
                 seed: int | None = None, noise: str = "torch", threads: int = 1, window: int = 8,
                 **evaluator_kw: Any) -> None:
        registry.get(method)  # an unknown name: the registry's one-line error
        if method not in SUPPORTED:
            raise ValueError(f"ZOWorkers runs {' / '.join(map(repr, SUPPORTED))} only (dense Gaussian two-sided "
                             f"steps), not {method!r}: low-rank methods keep per-replica subspaces, the step rules "
                             "need each pass's loss before the next")
        if not callable(factory):
            raise TypeError(f"factory must be callable, got {type(factory).__name__}")
        self.config = ZOConfig(method=method, eps=eps, n_directions=n_directions, noise=noise)
        self.lr = _positive("lr", lr)
        self.weight_decay = _positive("weight_decay", weight_decay)
        for name, v in (("threads", threads), ("window", window)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _SEED_LIMIT:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        self.factory, self.threads, self.window = factory, threads, window
        self._own_evaluator = not isinstance(evaluator, Evaluator)
        self.evaluator: Evaluator = make_evaluator(evaluator, **evaluator_kw)
        self._key = uuid.uuid4().hex
        self._master = torch.Generator()
        self._master.manual_seed(seed)
        self._log: list[Record] = []
        self._seen: dict[str, int] = {}  # replica id -> the step it evaluated last
        self._forward_passes = 0
        self.last_step = StepInfo()
        self.last_traffic: dict[str, int] = {}
        self.last_worker_seconds: list[tuple[float, float]] = []

    # ------------------------------------------------------------------ public
    @property
    def step_count(self) -> int:
        """Completed steps."""
        return len(self._log)

    @property
    def forward_passes(self) -> int:
        """Forward passes of all completed steps, over all workers (``2 n_directions`` per step)."""
        return self._forward_passes

    @property
    def log(self) -> tuple[Record, ...]:
        """Every committed step: with the factory, all that defines the current weights."""
        return tuple(self._log)

    def step(self, batch: Any = None) -> float:
        """One MeZO step on ``batch`` (passed to every worker's ``loss_fn``); returns the mean of the
        ``2 n_directions`` losses, as ``ZerothOrder.step`` does.

        Raises:
            FloatingPointError: a loss was not finite (the step is not committed; that replica is rebuilt).
            RuntimeError: replicas stayed behind for :data:`MAX_ROUNDS` rounds.
        """
        _positive("lr", self.lr)
        k, eps, t = self.config.n_directions, self.config.eps, len(self._log)
        seed = int(torch.randint(0, 2**62, (), generator=self._master).item())
        shares = [tuple(b) for b in chunk_bounds(k, min(k, max(1, self.evaluator.n_workers)))]
        known = [s for s in self._seen.values()]
        log_from = max(min(known, default=t), t - self.window, 0)
        done: dict[tuple[int, int], tuple[list[float], list[float]]] = {}
        seconds: dict[tuple[int, int], tuple[float, float]] = {}
        traffic = {"sent": 0, "received": 0, "chunks": 0, "items": 0, "retries": 0, "rounds": 0}
        pending = shares
        while pending:
            if traffic["rounds"] == MAX_ROUNDS:
                raise RuntimeError(f"ZOWorkers step {t}: replicas still behind after {MAX_ROUNDS} rounds")
            payload = Payload(self._key, self.factory, eps, k, self.weight_decay, self.config.noise, self.threads,
                               (socket.gethostname(), os.getpid()), t, seed, batch, log_from,
                               tuple(self._log[log_from:]))
            out = self.evaluator.map(evaluate_share, pending, payload)
            for name, v in getattr(self.evaluator, "last_traffic", {}).items():
                traffic[name] = traffic.get(name, 0) + v
            traffic["rounds"] += 1
            behind = []
            for share, res in zip(pending, out):
                if res[0] == "ok":
                    done[share] = (res[2], res[3])
                    seconds[share] = (res[4], res[5])
                    self._seen[res[1]] = t
                else:
                    behind.append(share)
                    self._seen[res[1]] = res[2]
                    log_from = min(log_from, res[2])
            pending = behind
        info = StepInfo(seed=seed, forward_passes=2 * k)
        for share in shares:
            info.loss_plus += done[share][0]
            info.loss_minus += done[share][1]
        info.projected_grad = [(lp - lm) / (2 * eps) for lp, lm in zip(info.loss_plus, info.loss_minus)]
        self._log.append(Record(seed, self.lr, tuple(info.projected_grad)))
        self._forward_passes += info.forward_passes
        self.last_step, self.last_traffic = info, traffic
        self.last_worker_seconds = [seconds[share] for share in shares]
        return (sum(info.loss_plus) + sum(info.loss_minus)) / (2 * k)

    @property
    def model(self) -> nn.Module:
        """The driver's replica, brought to the current step from the log (built from the factory on first use)."""
        payload = Payload(self._key, self.factory, self.config.eps, self.config.n_directions, self.weight_decay,
                           self.config.noise, self.threads, (socket.gethostname(), os.getpid()), len(self._log), 0,
                           None, 0, ())
        with lock_for(self._key), torch.no_grad():
            rep = REPLICAS.get(self._key)
            if rep is None or (rep.step == len(self._log) and not rep.pristine):
                rep = REPLICAS[self._key] = Replica(payload)  # the serial evaluator's replica is reused
            rep.catch_up(0, tuple(self._log), len(self._log))
            return rep.model

    def state_dict(self) -> dict[str, Any]:
        """The run as seeds and scalars: settings, generator state and the log (the weights follow from the
        factory and the log)."""
        return {"zo_workers": {"config": {"method": self.config.method, "eps": self.config.eps,
                                          "n_directions": self.config.n_directions, "noise": self.config.noise,
                                          "weight_decay": self.weight_decay},
                               "lr": self.lr, "rng": self._master.get_state(),
                               "log": [(r.seed, r.lr, list(r.grads)) for r in self._log]}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` (same factory and settings); replicas catch up from the log."""
        sd = state.get("zo_workers") if isinstance(state, dict) else None
        if not isinstance(sd, dict):
            raise ValueError("not a ZOWorkers state_dict (no 'zo_workers' entry)")
        mine = self.state_dict()["zo_workers"]["config"]
        if sd.get("config") != mine:
            raise ValueError(f"ZOWorkers settings differ from the checkpoint: {sd.get('config')} vs {mine}")
        self._master.set_state(sd["rng"])
        self.lr = _positive("lr", sd["lr"])
        self._log = [Record(int(s), float(lr), tuple(float(g) for g in grads)) for s, lr, grads in sd["log"]]
        self._key, self._seen = uuid.uuid4().hex, {}  # replicas of the old key are not reused
        self._forward_passes = 2 * self.config.n_directions * len(self._log)

    def close(self) -> None:
        """Close the evaluator if this object made it (worker processes free their replica on the next run)."""
        if self._own_evaluator:
            self.evaluator.close()
        REPLICAS.pop(self._key, None)

    def __enter__(self) -> "ZOWorkers":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ZOWorkers(method={self.config.method!r}, n_directions={self.config.n_directions}, "
                f"evaluator={self.evaluator!r}, step={self.step_count})")
