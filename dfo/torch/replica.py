"""The worker side of :class:`dfo.torch.workers.ZOWorkers`: a model replica per process, kept in step
from seeds and scalars only.

A replica is built once per process from the run's picklable factory and applies the run's log of
committed steps (:class:`Record`: seed, lr, projected gradients) by regenerating each step's
directions, replaying ZerothOrder's in-place round trips in the same order, so its weights stay
bit-identical to the driver's. :func:`evaluate_share` is what an evaluator runs for one share of a
step's directions: catch up, then return ``f(θ + εz)`` and ``f(θ − εz)`` for the share.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from dfo.torch.config import NOISE_CACHE_BYTES
from dfo.torch.directions import Generators, mix

Factory = Callable[[], "tuple[nn.Module, Callable[[nn.Module, Any], Any]]"]


@dataclass(frozen=True)
class Record:
    """One committed step, all a replica needs to apply it: the seed, the lr and the projected gradients."""

    seed: int
    lr: float
    grads: tuple[float, ...]


@dataclass(frozen=True)
class Payload:
    """What one step sends to every worker chunk (small: no tensors)."""

    key: str
    factory: Factory
    eps: float
    n_directions: int
    weight_decay: float
    noise: str
    threads: int
    driver: tuple[str, int]
    step: int
    seed: int
    batch: Any
    log_from: int
    log: tuple[Record, ...]


class Behind(Exception):
    """The replica is at step ``step``, before the log sent."""

    def __init__(self, step: int) -> None:
        super().__init__(step)
        self.step = step


class Replica:
    """A model replica and where it stands: ``step`` steps applied, ``cursor`` round trips of step ``step`` done."""

    def __init__(self, p: Payload) -> None:
        if (socket.gethostname(), os.getpid()) != p.driver:
            torch.set_num_threads(p.threads)  # a worker process: one intra-op thread per worker by default
        model, loss = p.factory()
        if not isinstance(model, nn.Module) or not callable(loss):
            raise TypeError("the factory must return (model, loss_fn): an nn.Module and loss_fn(model, batch)")
        self.model, self.loss = model.eval(), loss
        self.params = list(model.parameters())  # indexed like ZerothOrder(model.parameters()) slots
        self.eps, self.k, self.wd, self.noise = p.eps, p.n_directions, p.weight_decay, p.noise
        self.gens = Generators(cache_bytes=NOISE_CACHE_BYTES)
        self.step, self.cursor, self.open, self.seed = 0, 0, False, None

    @property
    def pristine(self) -> bool:
        return self.cursor == 0 and not self.open

    def _add(self, i: int, alpha: float) -> None:
        """``theta += alpha z_i`` on the trained tensors, the seeds of ``ZerothOrder._dense_seed``."""
        self.gens.add_gaussian([(p, mix(mix(self.seed, i), k), alpha)
                                for k, p in enumerate(self.params) if p.requires_grad], self.noise)

    def _round_trips(self, upto: int) -> None:
        for i in range(self.cursor, upto):
            self._add(i, self.eps)
            self._add(i, -2 * self.eps)
            self._add(i, self.eps)
        self.cursor = max(self.cursor, upto)

    def _loss(self, batch: Any, side: str, i: int) -> float:
        out = self.loss(self.model, batch)
        value = float(out.detach().item()) if torch.is_tensor(out) else float(out)
        if not math.isfinite(value):
            raise FloatingPointError(f"ZOWorkers step {self.step}: loss at theta {side} * z (direction {i}) is "
                                     f"{value} (lower eps or lr, or check loss_fn)")
        return value

    def evaluate(self, seed: int, lo: int, hi: int, batch: Any) -> tuple[list[float], list[float]]:
        """Losses at ``theta +- eps z_i`` for ``i`` in ``[lo, hi)``, at the weights ``ZerothOrder`` has there."""
        self.seed = seed
        self._round_trips(lo)
        plus, minus = [], []
        for i in range(lo, hi):
            self._add(i, self.eps)
            plus.append(self._loss(batch, "+eps", i))
            self._add(i, -2 * self.eps)
            minus.append(self._loss(batch, "-eps", i))
            if i < self.k - 1:
                self._add(i, self.eps)
                self.cursor = i + 1
            else:
                self.open = True  # ZerothOrder restores the last direction inside the update
        return plus, minus

    def apply(self, rec: Record) -> None:
        """Finish step ``self.step`` with its record: the remaining round trips, weight decay, restore + update."""
        if self.seed is not None and self.seed != rec.seed:
            raise RuntimeError("replica holds a perturbation of a step that was not committed")
        self.seed = rec.seed
        k, last, lr, eps = self.k, self.k - 1, rec.lr, self.eps
        if not self.open:
            self._round_trips(last)
            self._add(last, eps)
            self._add(last, -2 * eps)
        active = [(kk, p) for kk, p in enumerate(self.params) if p.requires_grad]
        shrink = {kk: 1.0 - lr * (self.wd if p.ndim >= 2 else 0.0) for kk, p in active}
        for kk, p in active:
            if shrink[kk] != 1.0:
                p.mul_(shrink[kk])
        g = rec.grads
        self.gens.add_gaussian([(p, mix(mix(rec.seed, last), kk), shrink[kk] * eps - lr * g[last] / k)
                                for kk, p in active], self.noise)
        for i, gi in enumerate(g[:-1]):
            self.gens.add_gaussian([(p, mix(mix(rec.seed, i), kk), -lr * gi / k) for kk, p in active], self.noise)
        self.gens.clear_cache()
        self.step, self.cursor, self.open, self.seed = self.step + 1, 0, False, None

    def catch_up(self, log_from: int, log: tuple[Record, ...], until: int) -> None:
        """Apply the logged steps ``self.step .. until-1`` (``log[j]`` is step ``log_from + j``)."""
        if self.step < log_from:
            raise Behind(self.step)
        while self.step < until:
            self.apply(log[self.step - log_from])


#: per process: the replica of each ZOWorkers (by key), and a lock per key (Dask workers may run threads)
REPLICAS: dict[str, Replica] = {}
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def lock_for(key: str) -> threading.Lock:
    """The lock of the replica ``key`` in this process (Dask workers may run several threads)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _replica_id(key: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{key}"


def _usable(rep: Replica, p: Payload, lo: int) -> bool:
    """Whether ``rep`` can still reach the weights at which share ``[lo, ...)`` of step ``p.step`` is evaluated."""
    if rep.step > p.step:
        return False
    if rep.step == p.step:  # mid-step: the same attempt, and this share not before what it has done
        return rep.seed in (None, p.seed) and rep.cursor <= lo and not rep.open
    logged = p.log[rep.step - p.log_from] if rep.step >= p.log_from else None
    return rep.seed is None or logged is None or logged.seed == rep.seed


def evaluate_share(p: Payload, share: tuple[int, int]) -> tuple:
    """Worker side of a step: ``("ok", replica id, plus, minus, wall s, CPU s)`` or ``("behind", replica id, step)``."""
    lock = lock_for(p.key)
    lo, hi = share
    with lock, torch.no_grad():
        rep = REPLICAS.get(p.key)
        if rep is not None and not _usable(rep, p, lo):
            rep = None  # a share of this step arrived out of order, or a failed attempt left a perturbation
        if rep is None:
            for other in [k for k in REPLICAS if k != p.key]:
                del REPLICAS[other]  # one replica per process: a new run frees the last one's model
            rep = REPLICAS[p.key] = Replica(p)
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            rep.catch_up(p.log_from, p.log, p.step)
            plus, minus = rep.evaluate(p.seed, lo, hi, p.batch)
        except Behind as behind:
            return ("behind", _replica_id(p.key), behind.step)
        except BaseException:
            REPLICAS.pop(p.key, None)  # left perturbed: rebuilt from the factory and the log next time
            raise
        return ("ok", _replica_id(p.key), plus, minus, time.perf_counter() - wall, time.process_time() - cpu)
