"""dfo.interrupts: the SIGINT/SIGTERM handling shared by the RL trainer and `dfo finetune`."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from dfo.interrupts import InterruptGuard, StopFlag, Terminated


def _kill(sig):
    os.kill(os.getpid(), sig)  # the Python handler runs in the main thread before the next bytecode


def test_stop_flag_records_a_stop_and_a_second_ctrl_c_aborts():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopFlag() as stop:
        assert not stop()
        _kill(signal.SIGTERM)
        assert stop() and stop.signum == signal.SIGTERM
        _kill(signal.SIGINT)  # after a SIGTERM, the first Ctrl-C only records
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            _kill(signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_catchers_change_nothing_outside_the_main_thread():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body():
        with StopFlag():
            seen.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [before]


class _Evaluator:
    def __init__(self, sig):
        self.sig, self.calls = sig, 0

    def map(self, fn, items, shared=None):
        self.calls += 1
        if self.sig is not None:
            _kill(self.sig)
        return [fn(x) for x in items]


@pytest.mark.parametrize("sig, exc", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_guard_raises_inside_map_and_holds_elsewhere(sig, exc):
    guard = InterruptGuard()
    ev = guard.wrap(_Evaluator(sig))
    guard.install()
    try:
        with pytest.raises(exc) as info:
            ev.map(abs, [-1])
        assert type(info.value) is exc and ev.calls == 1  # delegated attributes
        guard.raise_pending()  # raised once only
        _kill(signal.SIGINT)  # repeats are ignored while the checkpoint is written
    finally:
        guard.restore()

    held = InterruptGuard()
    held.install()
    try:
        _kill(sig)  # outside map: held
        assert held.pending == sig
        with pytest.raises(exc):
            held.raise_pending()
    finally:
        held.restore()
