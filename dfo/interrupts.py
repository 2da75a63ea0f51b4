"""Ctrl-C (SIGINT) and SIGTERM in long runs: stop where the state is consistent, then save it.

The one home of dfo's signal handling. While a catcher is installed (only in the
main thread; elsewhere nothing changes) both signals go to it, and the previous
handlers come back when it is removed. Two policies share that plumbing:

* :class:`StopFlag` (``dfo finetune``): a signal only sets a flag that the loop
  reads between steps (``stop()``), so the step in progress completes and a
  checkpoint is written; a second Ctrl-C raises ``KeyboardInterrupt`` at once.
* :class:`InterruptGuard` (the RL trainer, :meth:`dfo.policies.training.Trainer.run`): a
  signal that arrives inside an *interruptible* section (the evaluator's ``map``,
  where nearly all the time goes and no state changes) is raised at once; one that
  arrives elsewhere is held until :meth:`InterruptGuard.raise_pending`. Repeats
  are ignored while the checkpoint is written.

A raised SIGINT is ``KeyboardInterrupt`` and a raised SIGTERM :class:`Terminated`
(a subclass), so code that handles Ctrl-C handles both.

Example:
    >>> with StopFlag() as stop:
    ...     stop()
    False
"""

from __future__ import annotations

import signal
import threading
from typing import Any, TypeVar

C = TypeVar("C", bound="SignalCatcher")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C (a checkpoint is written, then this is raised)."""


def interrupt_for(signum: int) -> KeyboardInterrupt:
    """The exception a caught signal raises: :class:`Terminated` for SIGTERM, ``KeyboardInterrupt`` otherwise."""
    return Terminated("SIGTERM") if signum == signal.SIGTERM else KeyboardInterrupt()


class SignalCatcher:
    """Routes SIGINT and SIGTERM to :meth:`on_signal` between :meth:`install` and :meth:`restore`.

    Also a context manager (install on entry, restore on exit).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        """Catch the signals (only possible in the main thread; elsewhere nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handler)

    def restore(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}

    def __enter__(self: C) -> C:
        self.install()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()

    def _handler(self, signum: int, frame: Any) -> None:
        self.on_signal(signum)

    def on_signal(self, signum: int) -> None:
        """What a caught signal does (subclasses)."""
        raise NotImplementedError


class StopFlag(SignalCatcher):
    """A signal requests a stop (``stop()`` becomes true, ``signum`` names the latest); a second Ctrl-C
    in a row raises ``KeyboardInterrupt`` at once."""

    def __init__(self) -> None:
        super().__init__()
        self.signum: int | None = None

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __call__(self) -> bool:
        return self.signum is not None


class InterruptGuard(SignalCatcher):
    """Holds SIGINT/SIGTERM outside interruptible sections (see the module docstring).

    ``pending`` is the first signal caught (later ones are ignored); it is raised at
    once inside a section made by :meth:`wrap`, otherwise by :meth:`raise_pending`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: int | None = None
        self.raised = False
        self._interruptible = False

    def on_signal(self, signum: int) -> None:
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
        raise interrupt_for(self.pending)

    def wrap(self, evaluator: Any) -> _GuardedEvaluator:
        """An evaluator whose ``map`` calls are the sections where a signal is raised at once."""
        return _GuardedEvaluator(evaluator, self)


class _GuardedEvaluator:
    """Delegates to an evaluator; its ``map`` is interruptible (the caller's state is not being changed)."""

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
