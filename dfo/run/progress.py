"""Progress of a run on stderr: a one-line tqdm bar in a terminal, plain lines in a log.

In a log file or a pipe (``isatty()`` false) ``\\r``-redrawn frames are unreadable, so a plain
line such as ``ars-v2t Hopper-v5: it 12  episodes 96/2000  eval 120.30`` is printed, at most
every ``every_s`` seconds (:data:`PLAIN_EVERY_S`; 0 prints one per update) and once more at
the end. The job passes its own fields on each update; the bar shows them as its postfix.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> bar = Progress(total=8, desc="demo", unit="episodes", stream=out, every_s=0)
    >>> bar.update(4, {"it": 1, "eval": "3.50"}); bar.close()
    >>> out.getvalue()
    'demo: it 1  episodes 4/8  eval 3.50\\n'
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

#: seconds between plain progress lines when the stream is not a terminal
PLAIN_EVERY_S = 10.0


class Progress:
    """A tqdm bar when ``stream`` is a terminal, else a plain line every ``every_s`` seconds.

    Args:
        total: the count at which the run ends (episodes, steps).
        initial: the count already done (a resumed run).
        desc: what runs (``"ars-v2t Hopper-v5"``).
        unit: what is counted; the plain line shows ``<unit> <done>/<total>`` after the first field.
        stream: where to write (default: ``sys.stderr``).
        every_s: the least seconds between two plain lines.
    """

    def __init__(self, *, total: int, initial: int = 0, desc: str, unit: str = "it", stream: TextIO | None = None,
                 every_s: float = PLAIN_EVERY_S) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.total, self.desc, self.unit, self.every_s = int(total), desc, unit, float(every_s)
        self._bar = None
        self._last_t = -math.inf
        self._pending = ""
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=min(int(initial), self.total), unit=unit, desc=desc,
                             file=self.stream, dynamic_ncols=True)

    def update(self, done: int, fields: Mapping[str, Any]) -> None:
        """The count is now ``done``; ``fields`` (label -> value, in order) describe the run's state."""
        done = min(int(done), self.total)
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            self._bar.set_postfix({k: str(v) for k, v in fields.items()}, refresh=False)
            return
        parts = [f"{k} {v}" for k, v in fields.items()]
        parts.insert(min(1, len(parts)), f"{self.unit} {done}/{self.total}")
        self._pending = f"{self.desc}: " + "  ".join(parts)
        now = time.monotonic()
        if now - self._last_t >= self.every_s:
            self._flush(now)

    def note(self, text: str) -> None:
        """One line about an event of the run (above the bar on a terminal, in order otherwise)."""
        if self._bar is not None:
            self._bar.write(f"{self.desc}: {text}", file=self.stream)
            return
        self._flush(time.monotonic())
        print(f"{self.desc}: {text}", file=self.stream, flush=True)

    def _flush(self, now: float) -> None:
        if self._pending:
            print(self._pending, file=self.stream, flush=True)
            self._pending = ""
        self._last_t = now

    def close(self) -> None:
        """End the bar, or print the last plain line not yet printed."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            self._flush(time.monotonic())
