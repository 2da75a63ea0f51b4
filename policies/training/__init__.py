"""Policy-search training: config, the one training loop, run outputs.

Example:
    >>> from dfo.policies.training import TrainConfig
    >>> TrainConfig(env_id="Swimmer-v5", episodes=400).episodes
    400
"""

from dfo.policies.training.config import DEFAULT_EPISODES, TrainConfig
from dfo.policies.training.runlog import COLUMNS, DETERMINISTIC_COLUMNS
from dfo.policies.training.build import build_evaluator, build_policy
from dfo.policies.training.result import TrainResult
from dfo.policies.training.trainer import Trainer, train
from dfo.policies.training.rundir import RunDirError
from dfo.interrupts import Terminated
from dfo.run.metrics import LogError, read_progress

__all__ = [
    "TrainConfig",
    "DEFAULT_EPISODES",
    "Trainer",
    "TrainResult",
    "train",
    "build_policy",
    "build_evaluator",
    "read_progress",
    "COLUMNS",
    "DETERMINISTIC_COLUMNS",
    "Terminated",
    "RunDirError",
    "LogError",
]
