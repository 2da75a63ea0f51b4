"""Ctrl-C and SIGTERM during training: stop at a point where the state is consistent.

While :meth:`dfo.policies.training.Trainer.run` runs (in the main thread), SIGINT and SIGTERM
are caught by an :class:`~dfo.interrupts.InterruptGuard` (the signal handling lives in
:mod:`dfo.interrupts`, shared with ``dfo finetune``). A signal that arrives while rollouts
run (inside ``evaluator.map``, where nearly all the time goes and where the trainer's state
is not being changed) is raised at once; one that arrives while an iteration is being
committed or logged is held until that is done. The trainer then writes a checkpoint that
always matches the logs, and the run resumes with exactly the numbers an uninterrupted run
would have given.

SIGINT raises ``KeyboardInterrupt``; SIGTERM raises :class:`Terminated` (a subclass), so
code that handles Ctrl-C handles both. Further signals are ignored while the checkpoint
is written; the previous handlers are restored when ``run`` returns.

Example:
    >>> guard = InterruptGuard()
    >>> guard.install(); guard.restore()
"""

from __future__ import annotations

from dfo.interrupts import InterruptGuard, Terminated

__all__ = ["InterruptGuard", "Terminated"]
