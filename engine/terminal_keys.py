"""Single key presses from the terminal, read without waiting for Enter and without blocking.

The live demo turns its compute dial with keys while the decoder runs on another thread.
The terminal is put in cbreak mode (no line buffering, no echo; Ctrl-C still raises
KeyboardInterrupt, unlike raw mode) for exactly as long as the `terminal_keys` context
lasts: its `finally` restores the saved termios settings on every way out (the input
ends, Ctrl-C, an error). Keys are read only from a terminal this process owns in the
foreground: stdin that is a pipe, a file or a background job's terminal yields None, and
the demo then runs without keys.
"""
from __future__ import annotations

import contextlib
import os
import re
import select
from collections.abc import Iterator
from typing import TextIO

# A cursor or function key sends an escape sequence (up arrow: ESC [ A); dropped whole so its
# '[' is not taken for a key of its own.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|O.|.)?", re.DOTALL)


def printable_keys(data: bytes) -> str:
    """The characters typed in `data`, without escape sequences (arrows, function keys)."""
    return _ESCAPE_SEQUENCE.sub("", data.decode("utf-8", errors="ignore"))


class TerminalKeys:
    """Reads what was typed on a terminal already in cbreak mode (see `terminal_keys`)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._ended = False

    def read(self, timeout_s: float) -> str:
        """The keys typed since the last read, waiting up to `timeout_s` for one ('' if none).

        Once the terminal is gone (end of input) it only waits, so a caller's loop does not spin."""
        if self._ended:
            select.select([], [], [], timeout_s)
            return ""
        ready, _, _ = select.select([self._fd], [], [], timeout_s)
        if not ready:
            return ""
        data = os.read(self._fd, 64)
        if not data:
            self._ended = True
        return printable_keys(data)


def _foreground_terminal_fd(stdin: TextIO) -> int | None:
    """stdin's descriptor if it is a terminal whose foreground process group is ours."""
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a test harness, or closed
        return None
    if not os.isatty(fd):
        return None
    try:
        if os.tcgetpgrp(fd) != os.getpgrp():
            return None  # a background job: changing the terminal would stop us with SIGTTOU
    except OSError:
        pass  # a terminal that is not our controlling terminal has no job control to respect
    return fd


@contextlib.contextmanager
def terminal_keys(stdin: TextIO) -> Iterator[TerminalKeys | None]:
    """Cbreak mode on `stdin` while the block runs, restored however it ends; None if no keys can be read."""
    try:
        import termios
        import tty
    except ImportError:  # no POSIX terminal control on this platform: run without keys
        yield None
        return
    fd = _foreground_terminal_fd(stdin)
    if fd is None:
        yield None
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield TerminalKeys(fd)
    finally:
        # TCSAFLUSH: keys typed but not read stay out of the shell's next command line
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
