"""A graceful stop for training runs: the first SIGTERM or SIGINT becomes a flag, not a death.

Training runs for hours in the background and ends when its work session stops (SIGTERM) or
a user presses Ctrl-C (SIGINT). Dying on the signal loses every step since the last periodic
checkpoint; instead a training loop checks `requested` after each optimizer step, saves its
resumable checkpoint and returns. A second signal of either kind gets the handler that was in
place before (a second Ctrl-C still forces the quit).

Under torchrun the workers run in their own sessions: a Ctrl-C reaches torchrun, which sends
the same signal once to every worker and kills them if they are not done in time
(`--shutdown_timeout`, 30 s by default).

Python runs signal handlers on the main thread only, so elsewhere this is a no-op: no handler
is installed and `requested` stays False.
"""
from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Context manager: while active, the first SIGTERM or SIGINT sets `requested`; leaving it
    puts the previous handlers back. The loop, not the handler, reports the stop (printing from a
    handler can re-enter an interrupted write to the same stream)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.requested:
            self.requested = True
            return
        previous = self._previous[signal.Signals(signum)]
        if callable(previous):  # e.g. Python's default SIGINT handler: KeyboardInterrupt
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # SIG_DFL, or a handler Python did not install: the default action
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
