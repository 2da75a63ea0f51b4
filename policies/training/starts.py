"""Multi-start: several independent starts race for a slice of the budget, the best one continues.

Random search on the locomotion tasks has a bimodal fate per seed: from some initial
policies and episode-seed streams ARS leaves the "fall forward fast" plateau within a few
hundred episodes, from others it creeps along it for thousands (Mania, Guy, Recht 2018
report their Hopper/Walker2d figures over the best seeds; their repository's issue #2).
Which kind of seed a run got shows early, so a restart scheme with a fixed, small price
removes most of the failures: start ``K`` independent runs (lanes), give each ``E``
episodes, score each lane, continue the best one for the rest of the budget. It is the
first round of successive halving (Jamieson & Talwalkar 2016; Li et al. 2017,
Hyperband) with one survivor, or a budgeted restart strategy in the spirit of IPOP
restarts (Auger & Hansen 2005) without the population growth.

With a per-start failure probability ``p`` that the early score reveals, the race fails
with probability ``≈ p^K`` for ``(K − 1)·E`` extra episodes. Lane ``0`` uses the run's own
seed, so ``K = 1`` is exactly a plain run; lane ``k ≥ 1`` uses a seed derived from
``(seed, k)`` by :class:`numpy.random.SeedSequence`.

A lane's score is the mean of its last :data:`SCORE_EVALS` evaluations (each the mean true
return of ``n_eval_episodes`` fresh episodes), which is robust to one lucky evaluation.
Every episode of every lane counts against the run's episode budget; the iteration
counter and the logs run on across lanes (``progress.csv`` shows each lane in turn).

Example:
    >>> race = StartRace(starts=3, start_episodes=512)
    >>> race.lane_seed(7, 0), race.lane_seed(7, 1) != 7
    (7, True)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

#: how many of a lane's last evaluations make its score
SCORE_EVALS = 4


@dataclasses.dataclass
class StartRace:
    """The state of a multi-start race (JSON tree + arrays in a checkpoint).

    Attributes:
        starts: number of lanes ``K`` (``1``: no race).
        start_episodes: episodes each lane gets before it is scored (``E``).
        lane: the lane now running; ``starts`` once the race is decided.
        lane_begin: the run's episode count when the current lane began.
        evals: the current lane's evaluation returns so far.
        scores: the scores of the finished lanes, in lane order.
        best_state: the trainer state of the best finished lane (``None`` before any).
    """

    starts: int
    start_episodes: int
    lane: int = 0
    lane_begin: int = 0
    evals: list[float] = dataclasses.field(default_factory=list)
    scores: list[float] = dataclasses.field(default_factory=list)
    best_state: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.starts < 1:
            raise ValueError(f"starts must be >= 1, got {self.starts}")
        if self.starts > 1 and self.start_episodes < 1:
            raise ValueError(f"start_episodes must be >= 1 with {self.starts} starts, got {self.start_episodes}")

    @property
    def racing(self) -> bool:
        """Whether lanes are still running (the race is not decided yet)."""
        return self.lane < self.starts and self.starts > 1

    @staticmethod
    def lane_seed(seed: int, lane: int) -> int:
        """The seed of ``lane``: the run's seed for lane 0, a derived 31-bit seed otherwise."""
        if lane == 0:
            return int(seed)
        return int(np.random.SeedSequence([int(seed), int(lane)]).generate_state(1)[0] & 0x7FFFFFFF)

    def observe(self, eval_return: float) -> None:
        """Record one evaluation of the current lane (``nan``: none this iteration)."""
        if self.racing and not math.isnan(eval_return):
            self.evals.append(float(eval_return))

    def lane_over(self, episodes: int) -> bool:
        """Whether the current lane has used its ``start_episodes``."""
        return self.racing and episodes - self.lane_begin >= self.start_episodes

    def score(self) -> float:
        """Mean of the current lane's last :data:`SCORE_EVALS` evaluations (``-inf`` without any)."""
        if not self.evals:
            return -math.inf
        return float(np.mean(self.evals[-SCORE_EVALS:]))

    def finish_lane(self, state: dict[str, Any], episodes: int) -> bool:
        """Score the current lane, keep its ``state`` if it is the best so far, move to the next lane.

        Returns:
            ``True`` when the race is now decided (the caller loads :attr:`best_state`).
        """
        s = self.score()
        if self.best_state is None or s > max(self.scores):
            self.best_state = state
        self.scores.append(s)
        self.lane += 1
        self.lane_begin = episodes
        self.evals = []
        return self.lane >= self.starts

    @property
    def winner(self) -> int | None:
        """The lane that continues (``None`` while racing)."""
        if self.racing or not self.scores:
            return None
        return int(np.argmax(self.scores))

    def describe(self) -> str:
        """A line on the race so far: the finished starts' scores and which one continues."""
        scores = ", ".join(f"{v:.1f}" for v in self.scores)
        if self.racing:
            return f"start {self.lane} of {self.starts} done (scores {scores}); start {self.lane + 1} begins"
        return f"start {self.winner + 1} of {self.starts} continues (scores {scores})"

    def state_dict(self) -> dict[str, Any]:
        return {"starts": self.starts, "start_episodes": self.start_episodes, "lane": self.lane,
                "lane_begin": self.lane_begin, "evals": list(self.evals), "scores": list(self.scores),
                "best_state": self.best_state if self.racing else None}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StartRace:
        return cls(starts=int(state["starts"]), start_episodes=int(state["start_episodes"]),
                   lane=int(state["lane"]), lane_begin=int(state["lane_begin"]),
                   evals=[float(v) for v in state["evals"]], scores=[float(v) for v in state["scores"]],
                   best_state=state.get("best_state"))
