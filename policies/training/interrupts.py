"""Ctrl-C and SIGTERM during training: stop at a point where the state is consistent.

While :meth:`policies.training.Trainer.run` runs (in the main thread), SIGINT and SIGTERM
are caught. A signal that arrives while rollouts run (inside ``evaluator.map``, where
nearly all the time goes and where the trainer's state is not being changed) is raised at
once; one that arrives while an iteration is being committed or logged is held until
that is done. The trainer then writes a checkpoint that always matches the logs, and the
run resumes with exactly the numbers an uninterrupted run would have given.

SIGINT raises ``KeyboardInterrupt``; SIGTERM raises :class:`Terminated` (a subclass), so
code that handles Ctrl-C handles both. Further signals are ignored while the checkpoint
is written; the previous handlers are restored when ``run`` returns.

Example:
    >>> guard = InterruptGuard()
    >>> guard.install(); guard.restore()
"""

from __future__ import annotations

import signal
import threading
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM during training: handled like Ctrl-C (a checkpoint is written, then this is raised)."""


class InterruptGuard:
    """Holds SIGINT/SIGTERM outside :meth:`interruptible` sections (see the module docstring)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.pending: int | None = None
        self.raised = False
        self._interruptible = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        """Catch the signals (only possible in the main thread; elsewhere nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            self._old[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.pending is not None:  # already stopping: ignore repeats
            return
        self.pending = signum
        if self._interruptible:
            self.raise_pending()

    def raise_pending(self) -> None:
        """Raise the held signal, if any (once)."""
        if self.pending is None or self.raised:
            return
        self.raised = True
        self._interruptible = False
        if self.pending == signal.SIGTERM:
            raise Terminated("SIGTERM")
        raise KeyboardInterrupt

    def wrap(self, evaluator: Any) -> _GuardedEvaluator:
        """An evaluator whose ``map`` calls are the sections where a signal is raised at once."""
        return _GuardedEvaluator(evaluator, self)


class _GuardedEvaluator:
    """Delegates to an evaluator; its ``map`` is interruptible (the trainer state is not being changed)."""

    def __init__(self, inner: Any, guard: InterruptGuard) -> None:
        self._inner = inner
        self._guard = guard

    def map(self, fn, items, shared=None):
        self._guard.raise_pending()
        self._guard._interruptible = True
        try:
            return self._inner.map(fn, items, shared)
        finally:
            self._guard._interruptible = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
